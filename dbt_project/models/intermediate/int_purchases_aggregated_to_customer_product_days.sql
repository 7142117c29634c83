-- One row per customer, day and purchased product: what the customer bought that day (the
-- source of each segment's top categories and products). Incremental by date.

{{ config(**incremental_config('event_date')) }}

with

events as {{ inlined_cte() }} (

    select * from {{ ref('stg_shop__events') }}

),

dates as (

    {{ dates_to_build('events') }}

),

final as (

    select
        events.customer_id,
        events.event_date,
        events.product_id,
        any_value(events.category) as category,
        count(*) as purchases,
        cast(sum(coalesce(events.quantity, 1)) as bigint) as items,
        max(events._loaded_at) as _source_loaded_at
    from events
    inner join dates on events.event_date = dates.event_date
    where events.event_type = 'purchase'
    group by events.customer_id, events.event_date, events.product_id

)

select * from final
