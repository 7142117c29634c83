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

with_session_id as (

    select *, session_id as session_key
    from windowed
    where session_id is not null

),

without_session_id as (

    select
        *,
        case
            when event_ts - lag(event_ts) over by_customer
                <= interval '{{ var("session_gap_minutes") }} minutes' then 0
            else 1
        end as starts_session
    from windowed
    where session_id is null
    window by_customer as (partition by customer_id order by event_ts, event_id)

),

derived as (

    select
        * exclude (starts_session),
        customer_id || '~' || cast(
            sum(starts_session) over (
                partition by customer_id order by event_ts, event_id rows unbounded preceding
            ) as varchar
        ) as session_key
    from without_session_id

),

final as (

    select * from with_session_id
    union all by name
    select * from derived

)

select * from final
