{#-
    The behaviour state's fold (int_customer_behaviour_state): each customer's state carried
    from one active day to the next. The model's CTE `anchor` holds each customer's state before
    the first day to fold (step 0), `steps` one row per customer and day to fold (step 1, 2, ...)
    with the day's counts and the sums of its recent windows (r<w>_<sum>). The result has
    anchor's columns; the row with a customer's highest step is the state after the last day.

    DuckDB (default__): a recursive CTE, one day per recursion step (the CTE is named `fold`),
    the SQL the project always ran. Spark (spark__): one pass per customer, Spark SQL's
    aggregate() over the customer's days as an array sorted by step, with the same expressions
    in the same order (so the same doubles): Spark re-evaluates a recursive CTE's inputs at
    every recursion step, ~4 s per folded day even on a tiny demo.
-#}

{% macro behaviour_fold() -%}
    {{ return(adapter.dispatch('behaviour_fold')()) }}
{%- endmacro %}

{% macro default__behaviour_fold() -%}
{%- set sums = behaviour_sums() -%}
{%- set windows = int_list_var('change_windows_days') -%}
{%- set alpha = double(number_var('change_alpha')) ~ ' / ' ~ (windows | length) -%}
    select * from anchor

    union all

    select
        customer_id,
        step,
        state_date,
        first_event_date,
        last_order_date,
        case
            {%- for w in windows %}
            when changed and ratio_{{ w }} = best_ratio
                then greatest(state_date - {{ w - 1 }}, first_event_date)
            {%- endfor %}
            else regime_start
        end as regime_start,
        regime_changes + case when changed then 1 else 0 end as regime_changes,
        case when changed then state_date else last_regime_change end as last_regime_change,
        case when changed then 0 else gap_n end as gap_n,
        case when changed then 0 else gap_sum end as gap_sum,
        case when changed then 0 else gap_sq_sum end as gap_sq_sum,
        {%- for c in sums %}
        case
            {%- for w in windows %}
            when changed and ratio_{{ w }} = best_ratio then r{{ w }}_{{ c }}
            {%- endfor %}
            else {{ c }}
        end as {{ c }}{{ ',' if not loop.last }}
        {%- endfor %}
    from (

        select *, best_ratio > 1 as changed
        from (

            select
                *,
                greatest({% for w in windows %}ratio_{{ w }}{{ ', ' if not loop.last }}{% endfor %}) as best_ratio
            from (

                select
                    *,
                    {%- for w in windows %}
                    case when tests_{{ w }} > 0
                        then z2_{{ w }} / {{ chi2_quantile('tests_' ~ w, alpha) }}
                        else 0 end as ratio_{{ w }}{{ ',' if not loop.last }}
                    {%- endfor %}
                from (

                    select
                        *,
                        {%- for w in windows %}
                        {{ change_z2('r' ~ w ~ '_', 'o' ~ w ~ '_') }} as z2_{{ w }},
                        {{ change_tests('r' ~ w ~ '_', 'o' ~ w ~ '_') }} as tests_{{ w }}{{ ',' if not loop.last }}
                        {%- endfor %}
                    from (

                        -- the state moved to this day, and split into each recent window and
                        -- the rest of the regime
                        select
                            *,
                            {%- for w in windows %}
                            {%- for c in sums %}
                            {{ c }} - r{{ w }}_{{ c }} as o{{ w }}_{{ c }},
                            {%- endfor %}
                            {{ decayed_days("least(" ~ w ~ ", " ~ days_between('regime_start', 'state_date') ~ " + 1)") }} as r{{ w }}_exposure,
                            {{ decayed_days(days_between('regime_start', 'state_date') ~ " + 1") }}
                                - {{ decayed_days("least(" ~ w ~ ", " ~ days_between('regime_start', 'state_date') ~ " + 1)") }}
                                as o{{ w }}_exposure{{ ',' if not loop.last }}
                            {%- endfor %}
                        from (

                            select
                                fold.customer_id,
                                steps.step,
                                steps.event_date as state_date,
                                coalesce(fold.first_event_date, steps.event_date) as first_event_date,
                                case when steps.orders > 0 then steps.event_date else fold.last_order_date end as last_order_date,
                                coalesce(fold.regime_start, steps.event_date) as regime_start,
                                fold.regime_changes,
                                fold.last_regime_change,
                                {%- set fac = "coalesce(" ~ decay(days_between('fold.state_date', 'steps.event_date')) ~ ", 0)" %}
                                {%- set ordered = "steps.orders > 0 and fold.last_order_date is not null" %}
                                {%- set gap = days_between('fold.last_order_date', 'steps.event_date') %}
                                fold.gap_n * {{ fac }} + case when {{ ordered }} then 1 else 0 end as gap_n,
                                fold.gap_sum * {{ fac }} + case when {{ ordered }} then {{ gap }} else 0 end as gap_sum,
                                fold.gap_sq_sum * {{ fac }} + case when {{ ordered }} then pow({{ gap }}, 2) else 0 end as gap_sq_sum,
                                {%- for c in sums %}
                                fold.{{ c }} * {{ fac }} + steps.{{ c }} as {{ c }},
                                {%- endfor %}
                                steps.* except (customer_id, step, event_date, _source_loaded_at, _built_at, {{ sums | join(', ') }})
                            from fold
                            inner join steps
                                on steps.customer_id = fold.customer_id
                                and steps.step = fold.step + 1

                        )

                    )

                )

            )

        )

    )

{%- endmacro %}

{#- `body` with `name` bound to `value` (evaluated once): Spark SQL has no let; a lambda over a
    one-element array is one. -#}
{% macro spark_let(name, value, body) -%}
    transform(array({{ value }}), {{ name }} -> {{ body }})[0]
{%- endmacro %}

{% macro spark__behaviour_fold() -%}
{%- set sums = behaviour_sums() -%}
{%- set windows = int_list_var('change_windows_days') -%}
{%- set alpha = double(number_var('change_alpha')) ~ ' / ' ~ (windows | length) -%}
{#- the state and its types: aggregate() wants its merge to return exactly the start's type -#}
{%- set state = [
    ('step', 'bigint'), ('state_date', 'date'), ('first_event_date', 'date'),
    ('last_order_date', 'date'), ('regime_start', 'date'), ('regime_changes', 'bigint'),
    ('last_regime_change', 'date'), ('gap_n', 'double'), ('gap_sum', 'double'),
    ('gap_sq_sum', 'double'),
] -%}
{%- for c in sums %}{% do state.append((c, 'double')) %}{% endfor -%}

{#- One day folded into the state: default__behaviour_fold's nested selects, innermost first,
    one bound name per select. `acc` is the state before the day, `x` the day (a row of steps). -#}
{%- set fac = "coalesce(" ~ decay(days_between('acc.state_date', 'x.event_date')) ~ ", 0)" -%}
{%- set ordered = "x.orders > 0 and acc.last_order_date is not null" -%}
{%- set gap = days_between('acc.last_order_date', 'x.event_date') -%}

{#- m: the state moved to this day -#}
{%- set m -%}
named_struct(
    'state_date', x.event_date,
    'first_event_date', coalesce(acc.first_event_date, x.event_date),
    'last_order_date', case when x.orders > 0 then x.event_date else acc.last_order_date end,
    'regime_start', coalesce(acc.regime_start, x.event_date),
    'gap_n', acc.gap_n * {{ fac }} + case when {{ ordered }} then 1 else 0 end,
    'gap_sum', acc.gap_sum * {{ fac }} + case when {{ ordered }} then {{ gap }} else 0 end,
    'gap_sq_sum', acc.gap_sq_sum * {{ fac }} + case when {{ ordered }} then pow({{ gap }}, 2) else 0 end,
    {%- for c in sums %}
    '{{ c }}', acc.{{ c }} * {{ fac }} + x.{{ c }}{{ ',' if not loop.last }}
    {%- endfor %}
)
{%- endset -%}

{#- s: split into each recent window (r, the day's own sums, copied beside) and the rest (o) -#}
{%- set s -%}
named_struct(
    {%- for w in windows %}
    {%- set last_window = loop.last %}
    {%- for c in sums %}
    'r{{ w }}_{{ c }}', x.r{{ w }}_{{ c }},
    'o{{ w }}_{{ c }}', m.{{ c }} - x.r{{ w }}_{{ c }},
    {%- endfor %}
    'r{{ w }}_exposure', {{ decayed_days("least(" ~ w ~ ", " ~ days_between('m.regime_start', 'm.state_date') ~ " + 1)") }},
    'o{{ w }}_exposure', {{ decayed_days(days_between('m.regime_start', 'm.state_date') ~ " + 1") }}
        - {{ decayed_days("least(" ~ w ~ ", " ~ days_between('m.regime_start', 'm.state_date') ~ " + 1)") }}{{ ',' if not last_window }}
    {%- endfor %}
)
{%- endset -%}

{#- t: each window's test statistic and degrees of freedom -#}
{%- set t -%}
named_struct(
    {%- for w in windows %}
    'z2_{{ w }}', {{ change_z2('s.r' ~ w ~ '_', 's.o' ~ w ~ '_') }},
    'tests_{{ w }}', {{ change_tests('s.r' ~ w ~ '_', 's.o' ~ w ~ '_') }}{{ ',' if not loop.last }}
    {%- endfor %}
)
{%- endset -%}

{#- q: each window's statistic over its critical value -#}
{%- set q -%}
named_struct(
    {%- for w in windows %}
    'ratio_{{ w }}', case when t.tests_{{ w }} > 0
        then t.z2_{{ w }} / {{ chi2_quantile('t.tests_' ~ w, alpha) }}
        else 0 end{{ ',' if not loop.last }}
    {%- endfor %}
)
{%- endset -%}

{#- b: the most significant window; changed when it is significant -#}
{%- set b -%}
named_struct(
    'best_ratio', greatest({% for w in windows %}q.ratio_{{ w }}{{ ', ' if not loop.last }}{% endfor %})
)
{%- endset -%}
{%- set changed = "b.best_ratio > 1" -%}

{#- the state after the day: restarted from the most significant window when changed -#}
{%- set after -%}
named_struct(
    'step', cast(x.step as bigint),
    'state_date', m.state_date,
    'first_event_date', m.first_event_date,
    'last_order_date', m.last_order_date,
    'regime_start', case
        {%- for w in windows %}
        when {{ changed }} and q.ratio_{{ w }} = b.best_ratio
            then greatest(m.state_date - {{ w - 1 }}, m.first_event_date)
        {%- endfor %}
        else m.regime_start
    end,
    'regime_changes', cast(acc.regime_changes + case when {{ changed }} then 1 else 0 end as bigint),
    'last_regime_change', case when {{ changed }} then m.state_date else acc.last_regime_change end,
    'gap_n', cast(case when {{ changed }} then 0 else m.gap_n end as double),
    'gap_sum', cast(case when {{ changed }} then 0 else m.gap_sum end as double),
    'gap_sq_sum', cast(case when {{ changed }} then 0 else m.gap_sq_sum end as double),
    {%- for c in sums %}
    '{{ c }}', cast(case
        {%- for w in windows %}
        when {{ changed }} and q.ratio_{{ w }} = b.best_ratio then s.r{{ w }}_{{ c }}
        {%- endfor %}
        else m.{{ c }}
    end as double){{ ',' if not loop.last }}
    {%- endfor %}
)
{%- endset -%}

    -- the step from the array, not from the state: a filter on it (the model's step > 0) would
    -- otherwise be pushed below the projection and evaluate aggregate() a second time
    select
        customer_id,
        last_step as step,
        {%- for name, type in state if name != 'step' %}
        state.{{ name }}{{ ',' if not loop.last }}
        {%- endfor %}
    from (

        select
            anchor.customer_id,
            cast(element_at(days.days, -1).step as bigint) as last_step,
            aggregate(
                days.days,
                named_struct(
                    {%- for name, type in state %}
                    '{{ name }}', cast(anchor.{{ name }} as {{ type }}){{ ',' if not loop.last }}
                    {%- endfor %}
                ),
                (acc, x) ->
                    {{ spark_let('m', m, spark_let('s', s, spark_let('t', t, spark_let('q', q, spark_let('b', b, after))))) }}
            ) as state
        from anchor
        inner join (

            -- each customer's days in order (the struct's first field is the step)
            select
                customer_id,
                array_sort(collect_list(struct(
                    step,
                    event_date,
                    {%- for c in sums %}
                    {{ c }},
                    {%- endfor %}
                    {%- for w in windows %}
                    {%- set last_window = loop.last %}
                    {%- for c in sums %}
                    r{{ w }}_{{ c }}{{ ',' if not (loop.last and last_window) }}
                    {%- endfor %}
                    {%- endfor %}
                ))) as days
            from steps
            group by customer_id

        ) as days on anchor.customer_id = days.customer_id

    )
{%- endmacro %}
