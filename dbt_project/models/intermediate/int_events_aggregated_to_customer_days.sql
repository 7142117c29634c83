-- One row per customer and day with an event: the day's additive behaviour counts, the input of
-- the behaviour state. Incremental: only the dates of newly loaded events are (re)built.
-- Sessions are cut at midnight (a session is counted on each day it has events), so a day's
-- row never depends on another day and a rebuilt date gives the same row. A customer whose
-- events of a rebuilt date are gone (a corrected re-delivery) keeps a row of zeros (events = 0)
-- so the behaviour state knows to fold that customer again; the state ignores such rows.

{#- A line is discounted when its landed discount is above 0, or, landed without one, when
    its price is more than 2 % below its product's base_price (the products files; rounding
    is no discount). -#}
{%- set discounted -%}
coalesce(discount > 0, products.base_price > 0 and price < products.base_price * 0.98, false)
{%- endset %}

{{ config(**incremental_config('event_date')) }}

with

events as {{ inlined_cte() }} (

    select * from {{ ref('stg_shop__events') }}

),

dates as (

    {{ dates_to_build('events') }}

),

products as (

    select product_id, base_price from {{ ref('stg_shop__products') }}

),

day_events as (

    select events.*
    from events
    inner join dates on events.event_date = dates.event_date

),

{{ sessionise('day_events', partition='event_date') }},

sessions as (

    select
        customer_id,
        event_date,
        session_key,
        count(*) filter (where event_type = 'view') as views,
        count(*) filter (where event_type = 'search') as searches,
        bool_or(event_type = 'view') as has_view,
        bool_or(event_type = 'cart') as has_cart,
        bool_or(event_type = 'purchase') as has_purchase
    from sessionised
    group by customer_id, event_date, session_key

),

session_counts as (

    select
        customer_id,
        event_date,
        count(*) as sessions,
        sum(views) as views,
        sum(searches) as searches,
        count(*) filter (where has_view) as view_sessions,
        count(*) filter (where has_cart) as cart_sessions,
        count(*) filter (where has_cart and not has_purchase) as abandoned_cart_sessions,
        count(*) filter (where has_purchase) as orders,
        count(*) filter (where has_purchase and has_view) as viewed_orders
    from sessions
    group by customer_id, event_date

),

event_counts as (

    select
        customer_id,
        event_date,
        count(*) as events,
        coalesce(sum(coalesce(price, 0) * coalesce(quantity, 1)) filter (where event_type = 'purchase'), 0) as revenue,
        coalesce(sum(coalesce(quantity, 1)) filter (where event_type = 'purchase'), 0) as items,
        coalesce(sum(coalesce(quantity, 1)) filter (where event_type = 'purchase' and {{ discounted }}), 0) as discounted_items,
        count(price) filter (where event_type in ('view', 'cart', 'purchase')) as priced_events,
        coalesce(sum(price) filter (where event_type in ('view', 'cart', 'purchase')), 0) as price_sum,
        coalesce(sum(price * price) filter (where event_type in ('view', 'cart', 'purchase')), 0) as price_sq_sum,
        count(price) filter (where event_type in ('view', 'cart', 'purchase') and {{ discounted }}) as discounted_priced_events,
        count(*) filter (where event_type = 'review') as reviews,
        count(review_rating) filter (where event_type = 'review') as rated_reviews,
        coalesce(sum(review_rating) filter (where event_type = 'review'), 0) as rating_sum,
        max(_loaded_at) as _source_loaded_at
    from day_events
    -- the catalogue, for a line landed without a discount (`discounted`, at the top)
    left join products on day_events.product_id = products.product_id
    group by customer_id, event_date

),

final as (

    select
        event_counts.customer_id,
        event_counts.event_date,
        {%- for col in behaviour_sums() %}
        {%- if col in ('sessions', 'views', 'searches', 'view_sessions', 'cart_sessions', 'abandoned_cart_sessions', 'orders', 'viewed_orders') %}
        cast(coalesce(session_counts.{{ col }}, 0) as double) as {{ col }},
        {%- else %}
        cast(event_counts.{{ col }} as double) as {{ col }},
        {%- endif %}
        {%- endfor %}
        event_counts._source_loaded_at,
        cast('{{ run_started_at }}' as timestamp) as _built_at
    from event_counts
    left join session_counts
        on event_counts.customer_id = session_counts.customer_id
        and event_counts.event_date = session_counts.event_date

)

select * from final
{%- if is_incremental() %}

union all

select
    previous.customer_id,
    previous.event_date,
    {%- for col in behaviour_sums() %}
    cast(0 as double) as {{ col }},
    {%- endfor %}
    cast(null as timestamp) as _source_loaded_at,
    cast('{{ run_started_at }}' as timestamp) as _built_at
from {{ this }} as previous
inner join dates on previous.event_date = dates.event_date
where not exists (
    select 1 from final
    where previous.customer_id = final.customer_id
      and previous.event_date = final.event_date
)
{%- endif %}
