{#-
    The project's vars reach SQL only through these macros: each is checked to be what it claims
    (a positive number, a list of positive whole numbers, an ISO date) and rendered from the
    parsed value, so no var can carry SQL, whether it came from dbt_project.yml, --vars or the
    Dagster launchpad.
-#}

{#- var(name) as a positive number (integer=True: a whole number). -#}
{% macro number_var(name, integer=False) -%}
    {%- set value = var(name) -%}
    {%- if value is boolean or value is not number or value <= 0
           or (integer and value is not integer) -%}
        {{ exceptions.raise_compiler_error(
            "var '" ~ name ~ "' must be a positive " ~ ('whole number' if integer else 'number')
            ~ ", got " ~ (value | string)[:50]) }}
    {%- endif -%}
    {{ return(value) }}
{%- endmacro %}

{#- var(name) as a non-empty list of positive whole numbers. -#}
{% macro int_list_var(name) -%}
    {%- set value = var(name) -%}
    {%- if value is string or value is not iterable or (value | length) == 0 -%}
        {{ exceptions.raise_compiler_error(
            "var '" ~ name ~ "' must be a list of positive whole numbers, got "
            ~ (value | string)[:50]) }}
    {%- endif -%}
    {%- for v in value -%}
        {%- if v is boolean or v is not integer or v <= 0 -%}
            {{ exceptions.raise_compiler_error(
                "var '" ~ name ~ "' must be a list of positive whole numbers, got "
                ~ (value | string)[:50]) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(value | list) }}
{%- endmacro %}

{#- The vars the stored behaviour state was folded with. An incremental run with other values
    would extend the state with differently computed days, so the state records them and a run
    with other values fails until a full refresh. `regime_test` is the version of the test
    itself (behaviour.sql's change_rates), `discounts` that of a line's discount in the day
    aggregates (2: from the product's base_price where the line has none): a state folded by
    older ones needs the same one full refresh. -#}
{#- Numbers are written canonically (%g): 30 and 30.0 are the same half-life. -#}
{% macro behaviour_params() -%}
    {{ return(
        'half_life_days=' ~ ('%g' | format(number_var('half_life_days')))
        ~ ';change_windows_days=' ~ (int_list_var('change_windows_days') | join(','))
        ~ ';change_alpha=' ~ ('%g' | format(number_var('change_alpha')))
        ~ ';session_gap_minutes=' ~ ('%g' | format(number_var('session_gap_minutes')))
        ~ ';regime_test=2;discounts=2'
    ) }}
{%- endmacro %}
