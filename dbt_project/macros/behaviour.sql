{#-
    The per-customer behaviour state: what is summed per customer and day, and how the sums are
    decayed and tested for a change of regime. Shared by the day aggregates, the state fold and
    customer_features so the list of sums is written once.
-#}

{#- Additive per customer-day quantities (int_events_aggregated_to_customer_days). -#}
{% macro behaviour_sums() -%}
  {{ return([
      'events', 'sessions', 'views', 'searches', 'view_sessions', 'cart_sessions',
      'abandoned_cart_sessions', 'orders', 'viewed_orders', 'revenue', 'items',
      'discounted_items', 'priced_events', 'price_sum', 'price_sq_sum',
      'discounted_priced_events', 'reviews', 'rated_reviews', 'rating_sum',
  ]) }}
{%- endmacro %}

{#- The decay factor of something `days` days old: 0.5 ** (days / half_life_days). -#}
{% macro decay(days) -%}
    pow(0.5, ({{ days }}) / {{ number_var('half_life_days') }}::double)
{%- endmacro %}

{#- Decayed days of exposure in a regime that started `n_days` days ago (inclusive of today):
    sum of decay(j) for j in 0..n_days-1. -#}
{% macro decayed_days(n_days) -%}
    ((1 - {{ decay(n_days) }}) / (1 - {{ decay(1) }}))
{%- endmacro %}

{#- z^2 of the difference between two rates n/d (recent vs earlier), or 0 when either side has
    less than `min_d` of its denominator. kind: 'binomial' (a share of the denominator) or
    'poisson' (a count per unit of the denominator). A little pooled prior keeps 0/n and n/n
    from having zero variance. -#}
{% macro rate_z2(n_r, d_r, n_o, d_o, kind, min_d=1) -%}
    case when {{ d_r }} >= {{ min_d }} and {{ d_o }} >= {{ min_d }} then
        pow({{ n_r }} / {{ d_r }} - {{ n_o }} / {{ d_o }}, 2)
        / (
            {%- if kind == 'binomial' %}
            greatest(
                (({{ n_r }} + {{ n_o }} + 0.5) / ({{ d_r }} + {{ d_o }} + 1))
                * (1 - ({{ n_r }} + {{ n_o }} + 0.5) / ({{ d_r }} + {{ d_o }} + 1)),
                0.001
            )
            {%- else %}
            (({{ n_r }} + {{ n_o }} + 0.5) / ({{ d_r }} + {{ d_o }} + 1))
            {%- endif %}
            * (1 / {{ d_r }} + 1 / {{ d_o }})
        )
    else 0 end
{%- endmacro %}

{#- 1 when rate_z2 with the same arguments is a test: both sides have evidence and the pooled
    rate is not degenerate (0, or 1 for a share), else 0. -#}
{% macro rate_df(n_r, d_r, n_o, d_o, kind, min_d=1) -%}
    case when {{ d_r }} >= {{ min_d }} and {{ d_o }} >= {{ min_d }}
        and {{ n_r }} + {{ n_o }} > 0
        {%- if kind == 'binomial' %}
        and {{ n_r }} + {{ n_o }} < {{ d_r }} + {{ d_o }}
        {%- endif %}
    then 1 else 0 end
{%- endmacro %}

{#- The (1 - alpha) quantile of a chi-square with `df` degrees of freedom (Wilson-Hilferty), with
    the normal quantile from Abramowitz & Stegun 26.2.23 (error < 5e-4); alpha < 0.5. -#}
{% macro chi2_quantile(df, alpha) -%}
    {%- set t = 'sqrt(-2 * ln(' ~ alpha ~ '))' -%}
    {%- set z = '(' ~ t ~ ' - (2.515517 + 0.802853 * ' ~ t ~ ' + 0.010328 * pow(' ~ t ~ ', 2))'
              ~ ' / (1 + 1.432788 * ' ~ t ~ ' + 0.189269 * pow(' ~ t ~ ', 2)'
              ~ ' + 0.001308 * pow(' ~ t ~ ', 3)))' -%}
    ({{ df }} * pow(1 - 2 / (9e0 * {{ df }}) + {{ z }} * sqrt(2 / (9e0 * {{ df }})), 3))
{%- endmacro %}

{#- A customer's rate num/den shrunk towards the shop's average (population.<prior>) by `k`
    pseudo-units of the denominator; both sums decayed by `f` to the snapshot date (`den_f`: the
    denominator's factor, 1 where it is decayed already). -#}
{% macro shrunk(num, den, prior, k, f='in_scope.f', den_f=none) -%}
    coalesce(
        ({{ num }} * {{ f }} + {{ k }} * population.{{ prior }})
            / nullif({{ den }} * {{ den_f if den_f is not none else f }} + {{ k }}, 0),
        population.{{ prior }}
    )
{%- endmacro %}

{#- A customer's rate per day of exposure (decayed already), shrunk towards the shop's by as
    many pseudo-days as the shop's average customer takes for var('prior_sessions') sessions:
    the same prior as every per-session rate. A customer seen on one day is not described by
    that day alone (one order on their first day: 30 orders a month), and the prior weighs
    less the more days the customer was seen. -#}
{% macro shrunk_per_day(num, prior) -%}
    {{ shrunk(num, 'in_scope.exposure', prior,
              '(params.k_session / nullif(population.sessions_per_day, 0))', den_f=1) }}
{%- endmacro %}

{#- The rates the regime test compares: (numerator, denominator, kind, given), see rate_z2.
    `given`: what the recent window holds by construction, left out of its side of the test.
    The test runs on an active day, so that day and one session of it are certain: counted,
    a customer who buys twice a year would show a visit rate of one in the window's days
    against a few a year before, and restart their regime on every order. -#}
{% macro change_rates() -%}
  {{ return([
      ('views', 'sessions', 'poisson', 0),
      ('searches', 'sessions', 'poisson', 0),
      ('cart_sessions', 'sessions', 'binomial', 0),
      ('abandoned_cart_sessions', 'cart_sessions', 'binomial', 0),
      ('orders', 'sessions', 'binomial', 0),
      ('discounted_priced_events', 'priced_events', 'binomial', 0),
      ('items', 'orders', 'poisson', 0),
      ('sessions', 'exposure', 'poisson', 1),
  ]) }}
{%- endmacro %}

{#- The recent side of a change_rates() entry: (numerator, denominator) less what it is given. -#}
{% macro recent_side(r, num, den, given) -%}
  {%- if given -%}
    {{ return(['(' ~ r ~ num ~ ' - ' ~ given ~ ')', '(' ~ r ~ den ~ ' - ' ~ given ~ ')']) }}
  {%- endif -%}
  {{ return([r ~ num, r ~ den]) }}
{%- endmacro %}

{#- The regime test's chi-square statistic: recent sums (columns prefixed `r`) against the rest
    of the regime (prefixed `o`), over change_rates() and the mean item price. -#}
{% macro change_z2(r, o) -%}
    {%- for num, den, kind, given in change_rates() %}
    {%- set n_r, d_r = recent_side(r, num, den, given) %}
    {{ rate_z2(n_r, d_r, o ~ num, o ~ den, kind) }} +
    {%- endfor %}
    case when {{ r }}priced_events >= 2 and {{ o }}priced_events >= 2 then
        pow({{ r }}price_sum / {{ r }}priced_events - {{ o }}price_sum / {{ o }}priced_events, 2)
        / (greatest(
            ({{ r }}price_sq_sum + {{ o }}price_sq_sum) / ({{ r }}priced_events + {{ o }}priced_events)
            - pow(({{ r }}price_sum + {{ o }}price_sum) / ({{ r }}priced_events + {{ o }}priced_events), 2),
            1e-9
        ) * (1 / {{ r }}priced_events + 1 / {{ o }}priced_events))
    else 0 end
{%- endmacro %}

{#- How many of change_z2's terms are tests (its degrees of freedom). -#}
{% macro change_tests(r, o) -%}
    {%- for num, den, kind, given in change_rates() %}
    {%- set n_r, d_r = recent_side(r, num, den, given) %}
    {{ rate_df(n_r, d_r, o ~ num, o ~ den, kind) }} +
    {%- endfor %}
    case when {{ r }}priced_events >= 2 and {{ o }}priced_events >= 2 then 1 else 0 end
{%- endmacro %}
