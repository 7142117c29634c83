{#- Fails for every value of `column_name` that occurs more than once in the model, looking only
    at the values of rows loaded (_loaded_at) since the day aggregate `aggregate` was last built
    (every row when it never was): those rows must be unique among themselves and against every
    older row. Older rows were checked by the build that aggregated them, so a daily refresh
    probes the day's keys against the history instead of grouping every key of the history.
    dbt build runs a model's tests before its children, so `aggregate` still holds the
    previous build when this runs. var('whole_table_checks') (every run but the daily
    refresh) checks every row. -#}
{% test unique_in_new_rows(model, column_name, aggregate) %}
{%- set built = adapter.get_relation(database=model.database, schema=model.schema, identifier=aggregate) %}
select {{ column_name }}, count(*) as n
from {{ model }}
{%- if built is not none and not var('whole_table_checks', false) %}
where {{ column_name }} in (
    select {{ column_name }}
    from {{ model }}
    where _loaded_at > (select coalesce(max(_source_loaded_at), {{ earliest('timestamp') }}) from {{ built }})
)
{%- endif %}
group by {{ column_name }}
having count(*) > 1
{% endtest %}
