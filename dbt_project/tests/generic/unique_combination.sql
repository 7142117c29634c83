{#- Fails for every combination of `columns` that occurs more than once (the model's grain).
    latest_build_only: check only the rows of the model's latest build (max of
    `build_column`). Right for the incremental day aggregates: they rebuild whole dates and
    `columns` include the date, so a duplicate can only sit among the rows of one build; older
    builds were checked when they were made. A daily refresh then checks one day, not the whole
    history.
    latest_build_of: a key column (e.g. customer_id) of a model whose incremental runs
    replace every row of the keys they touch (delete+insert on that key): check every row of
    the keys the latest build wrote, old rows included, so a row the delete missed is found;
    the other keys' rows were checked when they were written. A full build writes every key:
    the whole table is checked.
    var('whole_table_checks') (set by every run but the daily refresh: the full loop, the
    weekly retrain) checks the whole table either way, so a duplicate a failed daily check
    let stand is found again within a week. -#}
{% test unique_combination(model, columns, latest_build_only=false, build_column='_built_at',
                           latest_build_of=none) %}
select {{ columns | join(', ') }}, count(*) as n
from {{ model }}
{%- if latest_build_of and not var('whole_table_checks', false) %}
where {{ latest_build_of }} in (
    select {{ latest_build_of }} from {{ model }}
    where {{ build_column }} = (select max({{ build_column }}) from {{ model }})
)
{%- elif latest_build_only and not var('whole_table_checks', false) %}
where {{ build_column }} = (select max({{ build_column }}) from {{ model }})
{%- endif %}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
