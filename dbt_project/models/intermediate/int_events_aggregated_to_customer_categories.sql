-- One row per customer and category: how many of the customer's product events (view, cart,
-- purchase) in the feature window were in it. Shares and ranks are taken per customer in
-- customer_features with plain aggregates: a window over these rows (share, rank) cost 2 s of
-- CPU at 10M events, more than the counting.

with

events as (

    select * from {{ ref('int_events_sessionised') }}
    where category is not null
      and event_type in ('view', 'cart', 'purchase')

),

final as (

    select customer_id, category, count(*) as event_count
    from events
    group by customer_id, category

)

select * from final
