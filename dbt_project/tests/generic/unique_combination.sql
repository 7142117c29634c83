{#- Fails for every combination of `columns` that occurs more than once (the model's grain).
    latest_build_only: check only the rows of the model's latest build (max(_built_at)). Right
    for the incremental day aggregates: they rebuild whole dates and `columns` include the date,
    so a duplicate can only sit among the rows of one build; older builds were checked when they
    were made. A daily refresh then checks one day, not the whole history. -#}
{% test unique_combination(model, columns, latest_build_only=false) %}
select {{ columns | join(', ') }}, count(*) as n
from {{ model }}
{%- if latest_build_only %}
where _built_at = (select max(_built_at) from {{ model }})
{%- endif %}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
