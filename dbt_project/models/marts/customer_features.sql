-- One row per customer with an event in the trailing window (var('window_days') days ending on
-- the snapshot date), with behaviour features over that window.

with

events as (

    select * from {{ ref('stg_shop__events') }}

),

customers as (

    select * from {{ ref('stg_shop__customers') }}

),

windowed_events as (

    select * from {{ ref('int_events_sessionised') }}

),

sessions as (

    select * from {{ ref('int_events_aggregated_to_sessions') }}

),

orders as (

    select * from {{ ref('int_purchases_aggregated_to_orders') }}

),

categories as (

    select * from {{ ref('int_events_aggregated_to_customer_categories') }}

),

params as (

    select
        {{ snapshot_date() }} as snapshot_date,
        {{ var('window_days') }} as window_days,
        {{ var('trend_recent_days') }} as recent_days

),

seen as (

    select
        events.customer_id,
        min(events.event_date) as first_event_date,
        max(events.event_date) as last_event_date
    from events
    cross join params
    where events.event_date <= params.snapshot_date
    group by events.customer_id
    -- customers with no event in the window are out of scope (gone, not a segment)
    having max(events.event_date) > any_value(params.snapshot_date) - any_value(params.window_days)

),

session_stats as (

    select
        customer_id,
        count(*) as session_count,
        sum(view_count) as view_count,
        sum(search_count) as search_count,
        count(*) filter (where has_view) as view_session_count,
        count(*) filter (where has_cart) as cart_session_count,
        count(*) filter (where has_cart and not has_purchase) as abandoned_cart_session_count,
        count(*) filter (where has_purchase) as purchase_session_count,
        -- a purchase session without a view (a re-order, a session split at the window's
        -- start) is not a converted view: the rate stays within 0..1
        count(*) filter (where has_view and has_purchase) as viewed_purchase_session_count
    from sessions
    group by customer_id

),

activity as (

    select
        customer_id,
        count(*) as event_count,
        count(*) filter (where is_recent) as recent_event_count,
        avg(price) filter (where event_type in ('view', 'cart', 'purchase')) as avg_item_price,
        count(*) filter (where event_type = 'review') as review_count,
        avg(review_rating) filter (where event_type = 'review') as avg_review_rating
    from windowed_events
    group by customer_id

),

order_stats as (

    select
        customer_id,
        count(*) as order_count,
        sum(revenue) as monetary,
        sum(item_count) as item_count,
        sum(coalesce(discounted_item_count, 0)) as discounted_item_count,
        max(order_date) as last_order_date,
        avg(days_since_previous_order) as mean_days_between_orders,
        stddev_samp(days_since_previous_order) as std_days_between_orders
    from orders
    group by customer_id

),

category_stats as (

    select
        customer_id,
        count(*) as category_count,
        -- Herfindahl index of the category shares: sum((n / total)^2)
        sum(event_count * event_count) / (sum(event_count) * sum(event_count)) as category_hhi,
        max(event_count) / sum(event_count) as top_category_share,
        -- the most frequent category; ties go to the first by name
        arg_min(category, (-event_count, category)) as top_category
    from categories
    group by customer_id

),

joined as (

    select
        seen.customer_id,
        params.snapshot_date,
        params.window_days,
        params.recent_days,
        date_diff(
            'day',
            least(coalesce(cast(customers.signup_ts as date), seen.first_event_date), seen.first_event_date),
            params.snapshot_date
        ) as tenure_days,
        date_diff('day', seen.last_event_date, params.snapshot_date) as days_since_last_event,
        order_stats.last_order_date,
        coalesce(activity.event_count, 0) as event_count,
        coalesce(activity.recent_event_count, 0) as recent_event_count,
        coalesce(session_stats.session_count, 0) as session_count,
        coalesce(session_stats.view_count, 0) as view_count,
        coalesce(session_stats.search_count, 0) as search_count,
        coalesce(session_stats.view_session_count, 0) as view_session_count,
        coalesce(session_stats.cart_session_count, 0) as cart_session_count,
        coalesce(session_stats.abandoned_cart_session_count, 0) as abandoned_cart_session_count,
        coalesce(session_stats.purchase_session_count, 0) as purchase_session_count,
        coalesce(session_stats.viewed_purchase_session_count, 0) as viewed_purchase_session_count,
        coalesce(order_stats.order_count, 0) as order_count,
        coalesce(order_stats.monetary, 0) as monetary,
        coalesce(order_stats.item_count, 0) as item_count,
        coalesce(order_stats.discounted_item_count, 0) as discounted_item_count,
        order_stats.mean_days_between_orders,
        order_stats.std_days_between_orders,
        activity.avg_item_price,
        coalesce(activity.review_count, 0) as review_count,
        activity.avg_review_rating,
        category_stats.category_count,
        category_stats.category_hhi,
        category_stats.top_category_share,
        category_stats.top_category
    from seen
    cross join params
    left join customers on seen.customer_id = customers.customer_id
    left join session_stats on seen.customer_id = session_stats.customer_id
    left join activity on seen.customer_id = activity.customer_id
    left join order_stats on seen.customer_id = order_stats.customer_id
    left join category_stats on seen.customer_id = category_stats.customer_id

),

final as (

    select
        customer_id,
        snapshot_date,
        tenure_days,
        greatest(least(window_days, tenure_days + 1), 1) as exposure_days,
        days_since_last_event,
        coalesce(date_diff('day', last_order_date, snapshot_date), window_days) as recency_days,
        order_count as frequency,
        monetary,
        coalesce(monetary / nullif(order_count, 0), 0) as avg_order_value,
        coalesce(item_count / nullif(order_count, 0), 0) as items_per_order,
        event_count,
        session_count * 7.0 / greatest(least(window_days, tenure_days + 1), 1) as sessions_per_week,
        coalesce(view_count / nullif(session_count, 0), 0) as views_per_session,
        coalesce(search_count / nullif(session_count, 0), 0) as searches_per_session,
        viewed_purchase_session_count / nullif(view_session_count, 0) as view_to_purchase_rate,
        coalesce(cart_session_count / nullif(session_count, 0), 0) as cart_rate,
        abandoned_cart_session_count / nullif(cart_session_count, 0) as cart_abandonment_rate,
        discounted_item_count / nullif(item_count, 0) as discount_share,
        avg_item_price,
        category_count,
        top_category_share,
        category_hhi,
        top_category,
        mean_days_between_orders,
        std_days_between_orders,
        -- +1: only recent activity (new or returning), -1: only earlier activity (lapsing)
        coalesce(
            (recent_event_count / recent_days - (event_count - recent_event_count) / (window_days - recent_days))
            / nullif(recent_event_count / recent_days + (event_count - recent_event_count) / (window_days - recent_days), 0),
            0
        ) as activity_trend,
        review_count,
        avg_review_rating
    from joined

)

select * from final
