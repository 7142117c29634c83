-- One row per customer and category: how much of the customer's product attention it gets.

with

events as (

    select * from {{ ref('int_events_sessionised') }}
    where category is not null
      and event_type in ('view', 'cart', 'purchase')

),

counted as (

    select customer_id, category, count(*) as event_count
    from events
    group by customer_id, category

),

final as (

    select
        *,
        event_count / sum(event_count) over (partition by customer_id) as category_share,
        row_number() over (
            partition by customer_id order by event_count desc, category
        ) as category_rank
    from counted

)

select * from final
