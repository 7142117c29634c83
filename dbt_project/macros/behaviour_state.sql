{#-
    The select of int_customer_behaviour_state (its header says what it computes).
    incremental: fold the new days into the stored state ({{ this }}), else fold every day.
    bucket of buckets: only the customers whose fold_bucket() is `bucket` (a full build in
    several statements, see behaviour_fold_buckets()); buckets = 1: every customer.
-#}

{% macro behaviour_state(incremental, bucket=0, buckets=1) -%}
{%- set sums = behaviour_sums() -%}
{%- set windows = int_list_var('change_windows_days') -%}
{%- set window = windows | max -%}
{%- set params = behaviour_params() -%}

with recursive

all_days as {{ inlined_cte() }} (  -- read for a few rows: not copied whole

    select * from {{ ref('int_events_aggregated_to_customer_days') }}

),

days as (

    -- rows of zeros mark a customer whose events of a rebuilt date are gone: not a day
    select * from all_days
    where event_date <= {{ snapshot_date() }}
      and events > 0
      {%- if buckets > 1 %}
      and {{ fold_bucket('customer_id', buckets) }} = {{ bucket }}
      {%- endif %}

),

{% if incremental %}

prior as {{ inlined_cte() }} (

    select * from {{ this }}

),

checked as (

    -- the state can only move forward, with the parameters it was folded with: features as
    -- of an earlier date, or with another half-life, windows, level or session gap, need a
    -- full refresh
    select case
        when {{ snapshot_date() }} < (select max(state_date) from prior)
        then {{ raise_sql_error("'snapshot_date is before the behaviour state; run with a full refresh (segmentation run --full-refresh, or full_refresh: true on dbt_models in the launchpad)'") }}
        when (select any_value(_params) from prior) <> '{{ params }}'
        then {{ raise_sql_error(
            "'the behaviour state was folded with ' || (select any_value(_params) from prior)
            || ', this run asks for " ~ params ~ "; run with a full refresh (segmentation run --full-refresh, or full_refresh: true on dbt_models in the launchpad)'") }}
    end as ok

),

changed as (

    select customer_id, min(event_date) as first_changed_date
    from all_days
    where (_built_at > (select max(_days_built_at) from prior)
           or not exists (select 1 from prior))  -- an empty state: every day is new
      and event_date <= {{ snapshot_date() }}
    group by customer_id

),

starts as (

    -- continue from the stored state when only later days changed; otherwise start over
    select
        changed.customer_id,
        case
            when prior.state_date < changed.first_changed_date then prior.state_date
        end as folded_through
    from changed
    left join prior on changed.customer_id = prior.customer_id
    cross join checked
    where checked.ok is null  -- referenced, so the optimizer cannot drop the check

),

{% else %}

starts as (

    select distinct customer_id, cast(null as date) as folded_through
    from days

),

{% endif %}

fold_days as (

    select
        days.*,
        row_number() over (partition by days.customer_id order by days.event_date) as step
    from days
    inner join starts on days.customer_id = starts.customer_id
    where starts.folded_through is null or days.event_date > starts.folded_through

),

recent as (

    -- each fold day's last days, one set of sums per window, decayed to that day
    select
        fold_days.customer_id,
        fold_days.step,
        {%- for w in windows %}
        {%- set last_window = loop.last %}
        {%- for c in sums %}
        sum(case when days.event_date > fold_days.event_date - {{ w }} then
            days.{{ c }} * {{ decay(days_between('days.event_date', 'fold_days.event_date')) }}
            else 0 end) as r{{ w }}_{{ c }}{{ ',' if not (loop.last and last_window) }}
        {%- endfor %}
        {%- endfor %}
    from fold_days
    inner join days
        on days.customer_id = fold_days.customer_id
        and days.event_date between fold_days.event_date - {{ window - 1 }} and fold_days.event_date
    group by fold_days.customer_id, fold_days.step

),

-- materialized: the recursive step below joins it once per folded day; left inline, DuckDB
-- recomputed the windowed sums on every iteration (46 s of a 63 s full build at 10M events)
steps as {{ materialized_cte() }} (

    select fold_days.*, recent.* except (customer_id, step)
    from fold_days
    inner join recent
        on fold_days.customer_id = recent.customer_id
        and fold_days.step = recent.step

),

anchor as (

    select
        starts.customer_id,
        cast(0 as bigint) as step,
        {%- if incremental %}
        prior.state_date,
        prior.first_event_date,
        prior.last_order_date,
        prior.regime_start,
        coalesce(prior.regime_changes, 0) as regime_changes,
        prior.last_regime_change,
        coalesce(prior.gap_n, 0) as gap_n,
        coalesce(prior.gap_sum, 0) as gap_sum,
        coalesce(prior.gap_sq_sum, 0) as gap_sq_sum,
        {%- for c in sums %}
        coalesce(prior.{{ c }}, 0) as {{ c }}{{ ',' if not loop.last }}
        {%- endfor %}
    from starts
    left join prior
        on starts.customer_id = prior.customer_id
        and starts.folded_through is not null
        {%- else %}
        cast(null as date) as state_date,
        cast(null as date) as first_event_date,
        cast(null as date) as last_order_date,
        cast(null as date) as regime_start,
        cast(0 as bigint) as regime_changes,
        cast(null as date) as last_regime_change,
        cast(0 as double) as gap_n,
        cast(0 as double) as gap_sum,
        cast(0 as double) as gap_sq_sum,
        {%- for c in sums %}
        cast(0 as double) as {{ c }}{{ ',' if not loop.last }}
        {%- endfor %}
    from starts
        {%- endif %}

),

fold as (

    -- the anchor, then one row per customer and folded day (step); the last is the state
    {{ behaviour_fold() }}

),

final as (

    select
        fold.* except (step),
        starts.folded_through is null as _refolded,
        (select max(_built_at) from all_days) as _days_built_at,
        '{{ params }}' as _params
    from fold
    inner join starts on fold.customer_id = starts.customer_id
    where fold.step > 0
    qualify row_number() over (partition by fold.customer_id order by fold.step desc) = 1

)

select * from final
{%- endmacro %}
