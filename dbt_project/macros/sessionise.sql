{#-
    CTEs giving every row of the CTE `events` a session key, ending in a CTE named `sessionised`:
    the landed session_id or, when the row has none, a session of the customer's events less
    than var('session_gap_minutes') apart. Sessions start at the first event of `events`: a
    session that began before its earliest date is counted from there.

    Used by int_events_sessionised (the feature window) and customer_recent_activity (the
    monitor's few days). The monitor sessionises its own days instead of filtering the
    feature window's view: DuckDB materialises that view's events, 100M rows at 100M events.
-#}
{% macro sessionise(events) -%}

with_session_id as (

    select *, session_id as session_key
    from {{ events }}
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
    from {{ events }}
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

sessionised as (

    select * from with_session_id
    union all by name
    select * from derived

)

{%- endmacro %}
