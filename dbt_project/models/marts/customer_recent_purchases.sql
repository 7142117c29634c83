-- One row per customer and product bought in the last var('top_items_days') days before the
-- snapshot date: what segment_profiles ranks each segment's top categories and products by.

with

purchases as (

    select * from {{ ref('int_purchases_aggregated_to_customer_product_days') }}

),

params as (

    select {{ snapshot_date() }} as snapshot_date, {{ number_var('top_items_days', integer=True) }} as days

),

final as (

    select
        purchases.customer_id,
        purchases.product_id,
        any_value(purchases.category) as category,
        cast(sum(purchases.purchases) as bigint) as purchases,
        cast(sum(purchases.items) as bigint) as items
    from purchases
    cross join params
    where purchases.event_date <= params.snapshot_date
      and purchases.event_date > params.snapshot_date - params.days
      and purchases.product_id is not null
    group by purchases.customer_id, purchases.product_id

)

select * from final
