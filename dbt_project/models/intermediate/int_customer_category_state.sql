-- One row per customer and category: the customer's product events in the category, summed
-- with the same decay as the behaviour state, since the start of the customer's current
-- regime, as of the customer's state date.
--
-- Incremental: customers whose state moved are updated; one whose regime restarted, whose
-- state was folded again from the start, or who is new, is recomputed from the category days
-- since the regime start; the others decay their stored counts and add the new days. Both
-- give the same counts.

{{ config(**incremental_config('customer_id')) }}

with

state as (

    select * from {{ ref('int_customer_behaviour_state') }}

),

-- inlined, as prior below: DuckDB would otherwise copy the whole table on every run to use a
-- few of its rows (macros/cross_engine.sql)
all_category_days as {{ inlined_cte() }} (

    select * from {{ ref('int_events_aggregated_to_customer_category_days') }}

),

category_days as (

    -- rows of zeros only mark categories whose events of a rebuilt date are gone
    select * from all_category_days
    where product_events > 0

),

{% if is_incremental() %}

prior as {{ inlined_cte() }} (

    select * from {{ this }}

),

moved as (

    select state.*
    from state
    where state._days_built_at > (select max(_days_built_at) from prior)
       or not exists (select 1 from prior)  -- an empty state (a build as of a date before
                                            -- every event): every customer is new

),

prior_dates as (

    -- the moved customers' only: grouping every stored row (35M at 100M events) each day
    -- would cost more than the day
    select customer_id, max(as_of) as as_of
    from prior
    where customer_id in (select customer_id from moved)
    group by customer_id

),

modes as (

    -- recompute when there is nothing to continue from, the regime restarted since, or a day
    -- already counted changed
    select
        moved.customer_id,
        moved.state_date,
        moved.regime_start,
        case
            when prior_dates.as_of is null or moved._refolded then null
            when moved.last_regime_change > prior_dates.as_of then null
            when exists (
                select 1 from all_category_days
                where all_category_days.customer_id = moved.customer_id
                  and all_category_days.event_date <= prior_dates.as_of
                  and all_category_days._built_at > (select max(_days_built_at) from prior)
            ) then null
            else prior_dates.as_of
        end as continue_from
    from moved
    left join prior_dates on moved.customer_id = prior_dates.customer_id

),

{% else %}

modes as (

    select customer_id, state_date, regime_start, cast(null as date) as continue_from
    from state

),

{% endif %}

counted as (

    select
        modes.customer_id,
        category_days.category,
        sum(
            category_days.product_events
            * {{ decay(days_between('category_days.event_date', 'modes.state_date')) }}
        ) as product_events
    from modes
    inner join category_days
        on category_days.customer_id = modes.customer_id
        and category_days.event_date >= coalesce(modes.continue_from + 1, modes.regime_start)
        and category_days.event_date <= modes.state_date
    group by modes.customer_id, category_days.category

    {%- if is_incremental() %}

    union all

    select
        modes.customer_id,
        prior.category,
        prior.product_events * {{ decay(days_between('modes.continue_from', 'modes.state_date')) }}
    from modes
    inner join prior on prior.customer_id = modes.customer_id
    where modes.continue_from is not null
    {%- endif %}

    union all

    -- one row per updated customer even without categories, so none keeps stale rows
    select customer_id, null, 0 from modes

),

final as (

    select
        counted.customer_id,
        counted.category,
        sum(counted.product_events) as product_events,
        any_value(modes.state_date) as as_of,
        (select max(_days_built_at) from state) as _days_built_at
    from counted
    inner join modes on counted.customer_id = modes.customer_id
    group by counted.customer_id, counted.category

)

select * from final
