-- One row per customer, day and category: the customer's product events (view, cart,
-- purchase) in that category that day. Incremental like the customer days: only the dates of
-- newly loaded events are (re)built (a row whose events are gone stays, with 0 events).

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
        events.category,
        cast(count(*) as double) as product_events,
        max(events._loaded_at) as _source_loaded_at,
        cast('{{ run_started_at }}' as timestamp) as _built_at
    from events
    inner join dates on events.event_date = dates.event_date
    where events.category is not null
      and events.event_type in ('view', 'cart', 'purchase')
    group by events.customer_id, events.event_date, events.category

)

select * from final
{%- if is_incremental() %}

union all

select
    previous.customer_id,
    previous.event_date,
    previous.category,
    cast(0 as double) as product_events,
    cast(null as timestamp) as _source_loaded_at,
    cast('{{ run_started_at }}' as timestamp) as _built_at
from {{ this }} as previous
inner join dates on previous.event_date = dates.event_date
where not exists (
    select 1 from final
    where previous.customer_id = final.customer_id
      and previous.event_date = final.event_date
      and previous.category = final.category
)
{%- endif %}
