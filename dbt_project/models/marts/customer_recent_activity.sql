-- What each customer did in the last var('monitor_window_days') days (default 7) before the
-- snapshot date: the drift monitor's view of behaviour *now*.
--
-- customer_features describe a 90-day window, so a shift in behaviour fills 1/90 of them a day
-- and a drift monitor on them lags by weeks. This short window responds within days. It is
-- incremental and keeps every snapshot it was built for (delete+insert per snapshot_date, never
-- fully refreshed), so the monitor can compare today with the day the champion was fitted.

{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='snapshot_date',
        full_refresh=false,
        on_schema_change='fail',
    )
}}

with

params as (

    select {{ snapshot_date() }} as snapshot_date, {{ var('monitor_window_days') }} as days

),

events as (

    select events.*, params.snapshot_date
    from {{ ref('stg_shop__events') }} as events
    cross join params
    where events.event_date <= params.snapshot_date
      and events.event_date > params.snapshot_date - params.days

),

{{ sessionise('events') }},

sessions as (

    select
        customer_id,
        session_key,
        count(*) as event_count,
        count(*) filter (where event_type = 'view') as view_count,
        count(*) filter (where event_type = 'search') as search_count,
        bool_or(event_type = 'cart') as has_cart,
        bool_or(event_type = 'purchase') as has_purchase
    from sessionised
    group by customer_id, session_key

),

session_stats as (

    select
        customer_id,
        count(*) as session_count,
        avg(event_count) as events_per_session,
        avg(view_count) as views_per_session,
        avg(search_count) as searches_per_session,
        avg(has_cart::int) as cart_rate,
        avg((not has_purchase)::int) filter (where has_cart) as cart_abandonment_rate,
        avg(has_purchase::int) as purchase_rate
    from sessions
    group by customer_id

),

event_stats as (

    select
        customer_id,
        any_value(snapshot_date) as snapshot_date,
        count(distinct event_date) as active_days,
        coalesce(
            sum(coalesce(price, 0) * coalesce(quantity, 1)) filter (where event_type = 'purchase'),
            0
        ) as spend,
        avg(price) filter (where event_type in ('view', 'cart', 'purchase')) as avg_item_price,
        sum(coalesce(quantity, 1)) filter (where event_type = 'purchase' and discount > 0)
            / sum(coalesce(quantity, 1)) filter (where event_type = 'purchase') as discount_share
    from events
    group by customer_id

),

final as (

    select
        event_stats.snapshot_date,
        event_stats.customer_id,
        event_stats.active_days,
        session_stats.session_count,
        session_stats.events_per_session,
        session_stats.views_per_session,
        session_stats.searches_per_session,
        session_stats.cart_rate,
        session_stats.cart_abandonment_rate,
        session_stats.purchase_rate,
        event_stats.spend,
        event_stats.avg_item_price,
        event_stats.discount_share
    from event_stats
    inner join session_stats on event_stats.customer_id = session_stats.customer_id

)

select * from final
