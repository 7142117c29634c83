-- One row per customer session in the feature window: what happened in it.

with

events as (

    select * from {{ ref('int_events_sessionised') }}

),

final as (

    select
        customer_id,
        session_key,
        min(event_ts) as session_start,
        bool_or(is_recent) as is_recent,
        count(*) filter (where event_type = 'view') as view_count,
        count(*) filter (where event_type = 'search') as search_count,
        count(*) filter (where event_type = 'view') > 0 as has_view,
        count(*) filter (where event_type = 'cart') > 0 as has_cart,
        count(*) filter (where event_type = 'purchase') > 0 as has_purchase
    from events
    group by customer_id, session_key

)

select * from final
