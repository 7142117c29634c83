{#-
    CTEs giving every row of the CTE `events` a session key, ending in a CTE named `sessionised`:
    the landed session_id or, when the row has none, a session of the customer's events less
    than var('session_gap_minutes') apart. `partition` (a column list) cuts sessions further:
    the day aggregates pass 'event_date', so a session never spans two days' rows.
-#}
{% macro sessionise(events, partition=none) -%}
{%- set by = 'customer_id' ~ (', ' ~ partition if partition else '') -%}

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
                <= {{ minutes_interval(number_var('session_gap_minutes')) }} then 0
            else 1
        end as starts_session
    from {{ events }}
    where session_id is null
    window by_customer as (partition by {{ by }} order by event_ts, event_id)

),

derived as (

    select
        * except (starts_session),
        customer_id || '~' || cast(
            sum(starts_session) over (
                partition by {{ by }} order by event_ts, event_id rows unbounded preceding
            ) as {{ dbt.type_string() }}
        ) as session_key
    from without_session_id

),

sessionised as (

    -- the same columns in the same order on both sides: the events' columns, then session_key
    select * from with_session_id
    union all
    select * from derived

)

{%- endmacro %}
