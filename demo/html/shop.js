/*
 * Loyalty demo storefront: renders the loyalty fragment that nginx
 * inserted as <script type="application/json" id="loyalty-data">.
 *
 * The fragment (docs/redis-schema.md, "The fragment") has a status and,
 * when the customer has a record, tier, label, points, next_tier,
 * points_to_next, progress, cashback, referral_code, segments and offers,
 * plus experiments ({"badge": "classic"}) when an A/B test gave a variant.
 *
 * Everything from the fragment goes into the page as text (textContent,
 * setAttribute on data-* attributes), never as HTML.
 */

(function () {
    'use strict';

    var CURRENCY = '\u20ac';

    function $(id) {
        return document.getElementById(id);
    }

    function show(el, on) {
        el.hidden = !on;
    }

    function isObject(v) {
        return v !== null && typeof v === 'object' && !Array.isArray(v);
    }

    function isCount(v) {
        return typeof v === 'number' && isFinite(v) && v >= 0;
    }

    function formatPoints(n) {
        return Math.floor(n).toLocaleString('en-US');
    }

    function formatMoney(n) {
        return CURRENCY + n.toFixed(2);
    }

    /* class names only from the tier's own characters */
    function token(s) {
        return String(s).replace(/[^A-Za-z0-9_-]/g, '');
    }

    /* links from the catalog: same-site paths or http(s) URLs only */
    function safeUrl(u) {
        if (typeof u !== 'string') {
            return null;
        }
        if (/^\/(?!\/)/.test(u) || /^https?:\/\//i.test(u)) {
            return u;
        }
        return null;
    }

    function readFragment() {
        var el = $('loyalty-data'), data;

        if (!el) {
            return null;
        }

        try {
            data = JSON.parse(el.textContent);
        } catch (e) {
            return null;
        }

        return isObject(data) ? data : null;
    }

    function renderBadge(data, hasRecord) {
        var badge = $('tier-badge');

        if (hasRecord) {
            badge.textContent = typeof data.label === 'string' && data.label
                                ? data.label : data.tier;
            badge.setAttribute('data-tier', data.tier);
            badge.className = 'badge tier-' + token(data.tier);
            if (isCount(data.progress)) {
                badge.style.setProperty('--progress',
                                        Math.min(data.progress, 1));
            }
            show(badge, true);

        } else if (!data || data.status === 'anonymous'
                   || data.status === 'invalid')
        {
            badge.textContent = 'Guest';
            badge.setAttribute('data-tier', '');
            badge.className = 'badge guest';
            show(badge, true);

        } else if (data.status === 'unknown') {
            badge.textContent = 'Welcome';
            badge.setAttribute('data-tier', '');
            badge.className = 'badge guest';
            show(badge, true);

        } else {
            show(badge, false);
        }
    }

    function renderProgress(data) {
        var box = $('progress-box'), bar = $('progress'), next = $('next-tier'),
            name;

        if (!isCount(data.progress)) {
            /* a tier outside the ladder: no progress to show */
            show(box, false);
            return;
        }

        bar.value = Math.min(data.progress, 1);
        bar.setAttribute('aria-valuenow', String(bar.value));
        bar.setAttribute('aria-label', 'Progress to the next tier');

        next.textContent = '';

        if (typeof data.next_tier === 'string' && isCount(data.points_to_next)) {
            next.setAttribute('data-tier', data.next_tier);
            next.setAttribute('data-points-to-next',
                              String(data.points_to_next));
            name = document.createElement('span');
            name.className = 'tier-name';
            name.textContent = data.next_tier;
            next.appendChild(document.createTextNode(
                formatPoints(data.points_to_next) + ' points to '));
            next.appendChild(name);

        } else {
            next.setAttribute('data-tier', '');
            next.setAttribute('data-points-to-next', '');
            next.textContent = 'Top tier: you have every benefit';
        }

        show(box, true);
    }

    function renderOffers(data) {
        var list = $('offers'), offers, i, o, li, title, extra, link, url;

        list.textContent = '';
        offers = Array.isArray(data.offers) ? data.offers : [];

        for (i = 0; i < offers.length; i++) {
            o = offers[i];

            if (!isObject(o) || typeof o.id !== 'string'
                || typeof o.title !== 'string')
            {
                continue;
            }

            li = document.createElement('li');
            li.className = 'offer';
            li.setAttribute('data-offer-id', o.id);

            title = document.createElement('span');
            title.className = 'offer-title';
            url = safeUrl(o.url);

            if (url) {
                link = document.createElement('a');
                link.setAttribute('href', url);
                link.textContent = o.title;
                title.appendChild(link);
            } else {
                title.textContent = o.title;
            }

            li.appendChild(title);

            if (typeof o.badge === 'string' && o.badge) {
                extra = document.createElement('span');
                extra.className = 'offer-badge';
                extra.textContent = o.badge;
                li.appendChild(extra);
            }

            if (typeof o.code === 'string' && o.code) {
                extra = document.createElement('span');
                extra.className = 'offer-code';
                extra.appendChild(document.createTextNode('code '));
                link = document.createElement('code');
                link.textContent = o.code;
                extra.appendChild(link);
                li.appendChild(extra);
            }

            list.appendChild(li);
        }

        show($('no-offers'), list.children.length === 0);
    }

    function renderRecord(data) {
        var points = $('points'), cashback = $('cashback'),
            referral = $('referral-code');

        points.textContent = isCount(data.points)
                             ? formatPoints(data.points) : '';
        points.setAttribute('data-points',
                            isCount(data.points) ? String(data.points) : '');

        if (isCount(data.cashback)) {
            cashback.textContent = formatMoney(data.cashback);
            cashback.setAttribute('data-cashback', data.cashback.toFixed(2));
            show($('cashback-box'), true);
        } else {
            show($('cashback-box'), false);
        }

        if (typeof data.referral_code === 'string' && data.referral_code) {
            referral.textContent = data.referral_code;
            show($('referral-box'), true);
        } else {
            show($('referral-box'), false);
        }

        renderProgress(data);
        renderOffers(data);
        show($('loyalty'), true);
    }

    function renderNote(status, hasRecord) {
        var note = $('status-note'), text = '';

        if (hasRecord) {
            if (status !== 'ok') {
                text = 'Your rewards may be a little out of date: '
                       + 'we could not refresh them just now.';
            }

        } else if (status === 'unknown') {
            text = 'Welcome! You are signed in, but you have no rewards '
                   + 'account yet: your points will show up here after '
                   + 'your first order.';

        } else if (status === 'invalid') {
            text = 'Your sign-in has expired: sign in again to see your '
                   + 'rewards.';

        } else if (status !== 'anonymous') {
            text = 'Your rewards cannot be shown right now. '
                   + 'Everything else in the shop works as usual.';
        }

        note.textContent = text;
        note.setAttribute('data-status', text ? status : '');
        show(note, text !== '');
    }

    function renderVariant(data) {
        var el = $('variant'), variant = '';

        if (data && isObject(data.experiments)
            && typeof data.experiments.badge === 'string')
        {
            variant = data.experiments.badge;
        }

        el.textContent = variant || 'none';
        el.setAttribute('data-variant', variant);

        if (variant) {
            document.body.classList.add('ab-badge-' + token(variant));
        }
    }

    function setupBuyButtons() {
        var buttons = document.querySelectorAll('button.buy'), i;

        for (i = 0; i < buttons.length; i++) {
            buttons[i].addEventListener('click', buy);
        }
    }

    /* an order: counts a conversion of the badge test (loyalty_ab_convert) */
    function buy(ev) {
        var value = ev.currentTarget.getAttribute('data-value'),
            order = 'demo-' + Date.now().toString(36)
                    + Math.floor(Math.random() * 1e6).toString(36),
            note = $('order-note');

        fetch('/checkout/thank-you?order=' + encodeURIComponent(order)
              + '&value=' + encodeURIComponent(value),
              { credentials: 'same-origin' })
            .then(function (r) { return r.json(); })
            .then(function (res) {
                var tests = isObject(res.converted)
                            ? Object.keys(res.converted) : [];
                note.textContent = 'Thank you! Order ' + order + ' ('
                    + CURRENCY + value + ') placed'
                    + (tests.length
                       ? ', counted as a conversion of the "'
                         + tests.join('", "') + '" test.'
                       : '.');
                show(note, true);
            })
            .catch(function () {
                note.textContent = 'Thank you! Order ' + order + ' placed.';
                show(note, true);
            });
    }

    function render() {
        var data = readFragment(),
            status = data && typeof data.status === 'string'
                     ? data.status : 'none',
            hasRecord = data !== null && typeof data.tier === 'string'
                        && data.tier !== '';

        document.body.setAttribute('data-loyalty-status', token(status));

        renderBadge(data, hasRecord);
        renderNote(status, hasRecord);

        if (hasRecord) {
            renderRecord(data);
        }

        show($('join'), !hasRecord
                        && (status === 'anonymous' || status === 'invalid'));

        renderVariant(data);

        $('fragment').textContent = data ? JSON.stringify(data, null, 2)
                                         : '(none)';

        setupBuyButtons();
        document.body.setAttribute('data-rendered', 'true');
    }

    if (document.readyState === 'loading') {
        document.addEventListener('DOMContentLoaded', render);
    } else {
        render();
    }
}());
