-- One row per order (the purchase events of one session) in the feature window.

with

purchases as (

    select * from {{ ref('int_events_sessionised') }}
    where event_type = 'purchase'

),

orders as (

    select
        customer_id,
        session_key,
        min(event_ts) as order_ts,
        cast(min(event_ts) as date) as order_date,
        sum(coalesce(price, 0) * coalesce(quantity, 1)) as revenue,
        sum(coalesce(quantity, 1)) as item_count,
        sum(coalesce(quantity, 1)) filter (where discount > 0) as discounted_item_count
    from purchases
    group by customer_id, session_key

),

final as (

    select
        *,
        date_diff(
            'day',
            lag(order_date) over (partition by customer_id order by order_ts, session_key),
            order_date
        ) as days_since_previous_order
    from orders

)

select * from final
