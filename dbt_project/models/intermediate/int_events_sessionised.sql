-- Events inside the trailing feature window, each with a session key: the landed session_id,
-- or (when the data has none) a session derived from gaps of more than session_gap_minutes.

with

events as (

    select * from {{ ref('stg_shop__events') }}

),

params as (

    select
        {{ snapshot_date() }} as snapshot_date,
        {{ var('window_days') }} as window_days,
        {{ var('trend_recent_days') }} as recent_days

),

windowed as (

    select
        events.*,
        params.snapshot_date,
        events.event_date > params.snapshot_date - params.recent_days as is_recent
    from events
    cross join params
    where events.event_date <= params.snapshot_date
      and events.event_date > params.snapshot_date - params.window_days

),

{{ sessionise('windowed') }}

select * from sessionised
