/* txmsg console: the page behind `txmsg console`. Plain DOM, no framework,
 * no build step; it talks only to its own origin's /api/ (cli/console/API.md).
 *
 * Safety: every value from the API reaches the page as text (textContent or
 * text nodes through el()); nothing here assigns innerHTML, and el() refuses
 * event-handler and style attributes, so a payload holding <script> or
 * <img onerror> stays inert. The Content-Security-Policy forbids inline
 * scripts and styles anyway; charts (uPlot) style elements through the DOM.
 *
 * Layout of this file: helpers (DOM, API, formatting), the token and action
 * state, then one block per panel (overview, outbox, trace, dead letters),
 * then the hash router and start-up. */
(function () {
    'use strict';

    var TOKEN_KEY = 'txmsg-console-token';
    var HISTORY_COLORS = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2',
                          '#db2777', '#4b5563'];

    var state = {
        overview: null,      /* last GET /api/overview answer */
        intervalMs: 2000,    /* refresh period the console announced */
        timer: null,
        actions: {enabled: false, readOnly: false},
        tablesSig: null,     /* figures the overview tables show now */
        charts: {},          /* chart key -> {fig, plot, sig} */
        /* params: the filters of the listing shown; current: its after_seq
         * (null: first page); next: next_after_seq of the answer. */
        outbox: {service: '', params: null, next: null, current: null, back: []},
        dlq: {queue: '', group: null, jobs: {}}, /* jobs: id -> its list item */
        panel: 'overview',
    };

    /* ---- DOM helpers ---- */

    function $(id) {
        return document.getElementById(id);
    }

    /* el('tag', {className, text, attr: value, ...}, child...): builds an
     * element. Strings and numbers become text nodes. Attributes named on*
     * and style are refused: the page never needs them and CSP forbids them. */
    function el(tag, props) {
        var node = document.createElement(tag);
        if (props) {
            Object.keys(props).forEach(function (k) {
                var v = props[k];
                if (v === undefined || v === null || v === false)
                    return;
                if (k === 'className')
                    node.className = v;
                else if (k === 'text')
                    node.textContent = String(v);
                else if (/^on/i.test(k) || k === 'style')
                    throw new Error('el: refused attribute ' + k);
                else
                    node.setAttribute(k, v === true ? '' : String(v));
            });
        }
        for (var i = 2; i < arguments.length; i++)
            append(node, arguments[i]);
        return node;
    }

    /* append(node, child...): each child an element, a string (as text),
     * an array of children, or null/undefined/false (nothing). */
    function append(node) {
        for (var i = 1; i < arguments.length; i++) {
            var child = arguments[i];
            if (child === undefined || child === null || child === false)
                continue;
            if (Array.isArray(child))
                child.forEach(function (c) { append(node, c); });
            else if (typeof child === 'string' || typeof child === 'number')
                node.appendChild(document.createTextNode(String(child)));
            else
                node.appendChild(child);
        }
        return node;
    }

    function clear(node) {
        while (node.firstChild)
            node.removeChild(node.firstChild);
        return node;
    }

    function button(label, onClick, opts) {
        opts = opts || {};
        var b = el('button', {type: 'button', className: opts.className,
                              'aria-label': opts.ariaLabel, title: opts.title}, label);
        b.addEventListener('click', onClick);
        if (opts.action)
            markAction(b);
        return b;
    }

    /* ---- formatting ---- */

    function fmtNum(v) {
        if (v === null || v === undefined)
            return '—';
        return Number(v).toLocaleString('en-US');
    }

    function fmtRate(v) {
        if (v === null || v === undefined)
            return '—';
        return Number(v).toFixed(1);
    }

    function fmtMs(ms) {
        if (ms === null || ms === undefined)
            return '—';
        if (ms < 1000)
            return Math.round(ms) + ' ms';
        var s = ms / 1000;
        if (s < 60)
            return (s < 10 && s % 1 !== 0 ? s.toFixed(1) : Math.round(s)) + ' s';
        if (s < 3600)
            return Math.floor(s / 60) + ' m ' + Math.round(s % 60) + ' s';
        if (s < 86400)
            return Math.floor(s / 3600) + ' h ' + Math.round((s % 3600) / 60) + ' m';
        return Math.floor(s / 86400) + ' d ' + Math.round((s % 86400) / 3600) + ' h';
    }

    function fmtBytes(b) {
        if (b === null || b === undefined)
            return '—';
        var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
        var i = 0;
        while (b >= 1024 && i < units.length - 1) {
            b /= 1024;
            i++;
        }
        return (i === 0 ? b : b.toFixed(1)) + ' ' + units[i];
    }

    /* RFC 3339 from the API, shortened for tables; the full text stays in
     * the title attribute. */
    function fmtTime(s) {
        if (!s)
            return '—';
        var m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(\.\d{3})?/.exec(String(s));
        return m ? m[1] + ' ' + m[2] + (m[3] || '') : String(s);
    }

    function timeCell(s) {
        return el('td', {className: 'time', title: s || undefined}, fmtTime(s));
    }

    function shortId(id) {
        id = String(id || '');
        return id.length > 13 ? id.slice(0, 8) + '…' + id.slice(-4) : id;
    }

    function idSpan(id) {
        return el('span', {className: 'id', title: id}, shortId(id));
    }

    /* A link that opens the trace of a correlation id. */
    function traceLink(cid) {
        if (!cid)
            return el('span', {className: 'muted'}, '—');
        return el('a', {href: '#trace/' + encodeURIComponent(cid), className: 'id cid',
                        title: 'Trace ' + cid}, shortId(cid));
    }

    function badge(text, kind) {
        return el('span', {className: 'badge ' + (kind || '')}, text);
    }

    /* ---- API ---- */

    function ApiError(status, body, text) {
        this.status = status;
        this.body = body;
        this.text = text;
        this.message = (body && body.error ? body.error : 'HTTP ' + status) +
                       (body && body.detail ? ': ' + body.detail : '');
    }

    /* Resolves with the parsed JSON, or rejects with an ApiError (its body
     * is the API's error document when there is one). */
    function api(method, path, body) {
        var headers = {'Accept': 'application/json'};
        var init = {method: method, headers: headers, credentials: 'same-origin',
                    cache: 'no-store'};
        if (method !== 'GET') {
            headers['X-Txmsg-Token'] = token();
            if (body !== undefined) {
                headers['Content-Type'] = 'application/json';
                init.body = JSON.stringify(body);
            }
        }
        return fetch(path, init).then(function (resp) {
            return resp.text().then(function (text) {
                var data = null;
                try {
                    data = text ? JSON.parse(text) : null;
                } catch (e) {
                    data = null;
                }
                if (!resp.ok)
                    throw new ApiError(resp.status, data, text);
                return data;
            });
        }, function (e) {
            throw new ApiError(0, {error: 'NETWORK', detail: String(e && e.message || e)}, '');
        });
    }

    function q(params) {
        var parts = [];
        Object.keys(params).forEach(function (k) {
            var v = params[k];
            if (v !== undefined && v !== null && v !== '')
                parts.push(encodeURIComponent(k) + '=' + encodeURIComponent(v));
        });
        return parts.length ? '?' + parts.join('&') : '';
    }

    function seg(s) {
        return encodeURIComponent(s);
    }

    /* Shows an API failure in box: the error code, detail and the whole
     * error document as text. */
    function showError(box, err, what) {
        clear(box);
        box.hidden = false;
        var e = err instanceof ApiError ? err : new ApiError(0, {error: 'ERROR',
                                                                  detail: String(err)}, '');
        var title = (what ? what + ' failed: ' : 'Failed: ') +
                    (e.status ? 'HTTP ' + e.status + ' ' : '') +
                    (e.body && e.body.error ? e.body.error : '');
        append(box, el('strong', null, title));
        if (e.body && e.body.detail)
            append(box, el('p', null, String(e.body.detail)));
        if (e.body && e.body.error === 'FORBIDDEN')
            append(box, el('p', null, 'Check the action token at the top of the page.'));
        append(box, el('pre', {className: 'json'},
                       e.body ? JSON.stringify(e.body, null, 2) : (e.text || '')));
        var close = button('Dismiss', function () { box.hidden = true; });
        append(box, close);
    }

    function hideError(box) {
        box.hidden = true;
        clear(box);
    }

    function banner(text) {
        var b = $('banner');
        if (!text) {
            b.hidden = true;
            clear(b);
            return;
        }
        clear(b);
        append(b, text);
        b.hidden = false;
    }

    /* ---- token and action state ---- */

    function token() {
        try {
            return sessionStorage.getItem(TOKEN_KEY) || '';
        } catch (e) {
            return '';
        }
    }

    function setToken(t) {
        try {
            if (t)
                sessionStorage.setItem(TOKEN_KEY, t);
            else
                sessionStorage.removeItem(TOKEN_KEY);
        } catch (e) {
            /* Storage refused (private mode): actions will answer FORBIDDEN. */
        }
        applyActionState();
    }

    /* Why actions cannot run now, or '' when they can. */
    function actionBlock() {
        if (!state.overview)
            return 'waiting for the console';
        /* The server reports read_only with enabled false: say the cause. */
        if (state.actions.readOnly)
            return 'actions off: the console runs --read-only';
        if (!state.actions.enabled)
            return 'actions off: the console has no TXMSG_CONSOLE_TOKEN';
        if (!token())
            return 'enter the action token to enable actions';
        return '';
    }

    function markAction(b) {
        b.classList.add('action');
        var why = actionBlock();
        b.disabled = why !== '';
        if (why)
            b.title = why;
    }

    function applyActionState() {
        var why = actionBlock();
        var note = $('actions-note');
        note.textContent = why ? why : 'actions enabled';
        note.className = 'note ' + (why ? 'warn' : 'ok');
        var form = $('token-form');
        var off = state.overview && (!state.actions.enabled || state.actions.readOnly);
        $('token-input').disabled = !!off;
        form.querySelectorAll('button').forEach(function (b) { b.disabled = !!off; });
        form.classList.toggle('off', !!off);
        Array.prototype.forEach.call(document.querySelectorAll('button.action'), function (b) {
            var blocked = why !== '' || b.dataset.busy === '1' || b.dataset.never === '1';
            b.disabled = blocked;
            if (why)
                b.title = why;
            else if (b.title && /^(actions off|enter the|waiting for)/.test(b.title))
                b.removeAttribute('title');
        });
        if (typeof purgeInputChanged === 'function')
            purgeInputChanged();
    }

    /* ---- overview ---- */

    function refreshOverview() {
        return api('GET', '/api/overview').then(function (ov) {
            state.overview = ov;
            state.actions.enabled = !!(ov.actions && ov.actions.enabled);
            state.actions.readOnly = !!(ov.actions && ov.actions.read_only);
            if (ov.interval_ms && ov.interval_ms >= 250)
                state.intervalMs = ov.interval_ms;
            banner(null);
            $('status-line').textContent = 'updated ' + fmtTime(ov.now) + ' UTC · every ' +
                                           fmtMs(state.intervalMs);
            renderOverview(ov);
            fillServiceSelect(ov);
            fillQueueSelect(ov);
            applyActionState();
        }, function (err) {
            $('status-line').textContent = 'console unreachable';
            banner('Cannot read /api/overview: ' + err.message + '. Retrying every ' +
                   fmtMs(state.intervalMs) + '.');
        });
    }

    function schedule() {
        if (state.timer)
            clearTimeout(state.timer);
        state.timer = setTimeout(function () {
            /* Only the overview refreshes by itself; hidden tabs skip it. */
            var p = document.hidden ? Promise.resolve() : refreshOverview();
            p.then(schedule, schedule);
        }, state.intervalMs);
    }

    function renderOverview(ov) {
        var brokerBox = clear($('overview-broker'));
        var b = ov.broker || {};
        append(brokerBox, el('span', {className: 'label'}, 'Broker'), ' ',
               el('code', null, b.url || '?'), ' ',
               b.available ? badge('available', 'ok') : badge('unavailable', 'bad'));
        if (b.error)
            append(brokerBox, ' ', el('span', {className: 'err-text'}, String(b.error)));

        var down = (ov.services || []).filter(function (s) { return !s.available; })
            .map(function (s) { return s.name; });
        if (b.available === false)
            down.unshift('the broker');
        var health = $('overview-health');
        var healthText = down.length ? 'Unavailable: ' + down.join(', ')
                                     : 'All services and the broker are available.';
        /* Changed only when it changes, so a screen reader hears news only. */
        if (health.textContent !== healthText) {
            health.textContent = healthText;
            health.className = 'health ' + (down.length ? 'bad' : 'ok');
        }
        renderTables(ov, b);
        renderCharts(ov);
    }

    /* The tables are rebuilt only when their figures changed, so focus and
     * selection survive the refreshes of a quiet system. */
    function renderTables(ov, b) {
        var sig = JSON.stringify([ov.services, ov.queues, b.available]);
        if (sig === state.tablesSig)
            return;
        state.tablesSig = sig;
        var tb = clear($('services-table').tBodies[0]);
        (ov.services || []).forEach(function (s) {
            tb.appendChild(serviceRow(s));
        });
        if (!(ov.services || []).length)
            tb.appendChild(el('tr', null, el('td', {colspan: 10, className: 'muted'},
                                              'No services configured.')));

        var qb = clear($('queues-table').tBodies[0]);
        (ov.queues || []).forEach(function (qu) {
            var dl = qu.dead_letters;
            var dlCell = el('td', {className: 'num'});
            if (dl)
                append(dlCell, el('a', {href: '#dlq/' + encodeURIComponent(qu.name),
                                        className: 'bad-text'}, fmtNum(dl)));
            else
                append(dlCell, fmtNum(dl));
            qb.appendChild(el('tr', {'data-queue': qu.name},
                              el('th', {scope: 'row'}, qu.name,
                                 qu.topic ? el('span', {className: 'muted topic-of'},
                                               ' ← ' + qu.topic) : null),
                              el('td', {className: 'num depth'}, fmtNum(qu.depth)),
                              el('td', {className: 'num'}, fmtNum(qu.in_flight)),
                              dlCell,
                              el('td', {className: 'num'}, fmtRate(qu.handled_per_second))));
        });
        if (!(ov.queues || []).length)
            qb.appendChild(el('tr', null, el('td', {colspan: 5, className: 'muted'},
                                              b.available === false ? 'Broker unavailable.'
                                                                    : 'No queues yet.')));
    }

    function serviceRow(s) {
        var tr = el('tr', {'data-service': s.name, className: s.available ? '' : 'down'});
        var name = el('th', {scope: 'row'}, s.name);
        if (!s.available)
            append(name, ' ', badge('unavailable', 'bad'));
        tr.appendChild(name);
        tr.appendChild(el('td', null, s.database || '—',
                          s.outbox_mode ? el('span', {className: 'muted'},
                                             ' · ' + s.outbox_mode) : null));
        if (!s.available) {
            tr.appendChild(el('td', {colspan: 8, className: 'err-text'},
                              String(s.error || 'database unavailable')));
            return tr;
        }
        var ob = s.outbox || {};
        var backlog = el('td', {className: 'num backlog'}, fmtNum(ob.not_dispatched));
        if (ob.not_dispatched > 0)
            backlog.classList.add('warn-text');
        tr.appendChild(backlog);
        tr.appendChild(el('td', {className: 'num'}, fmtMs(ob.oldest_age_ms)));
        var r = s.relay || {};
        var relayCell = el('td', null, r.name || '—');
        if (r.found === false)
            append(relayCell, ' ', badge('no position', 'warn'));
        else if (r.active === true)
            append(relayCell, ' ', badge('active', 'ok'));
        tr.appendChild(relayCell);
        tr.appendChild(el('td', {className: 'num'}, r.position === null || r.position === undefined
                                                        ? '—' : String(r.position)));
        tr.appendChild(el('td', {className: 'num'}, fmtNum(r.behind)));
        var lag = r.lag_ms;
        if ((lag === null || lag === undefined) && r.behind === 0)
            lag = 0; /* level with the outbox */
        tr.appendChild(el('td', {className: 'num'}, fmtMs(lag)));
        tr.appendChild(el('td', {className: 'num'}, fmtBytes(r.retained_wal_bytes)));
        var handled = el('td', {className: 'handled'});
        (s.handled || []).forEach(function (h, i) {
            if (i)
                append(handled, el('br'));
            append(handled, el('span', {className: 'muted'}, h.subscription + ' '),
                   fmtRate(h.per_second) + '/s');
        });
        if (!(s.handled || []).length)
            append(handled, '—');
        tr.appendChild(handled);
        return tr;
    }

    /* One chart per measure, one series per service or queue. */
    function renderCharts(ov) {
        var h = ov.history || {};
        var at = (h.at_ms || []).map(function (t) { return t / 1000; });
        var services = h.services || {};
        var queues = h.queues || {};
        var defs = [
            {key: 'backlog', title: 'Outbox backlog (not dispatched)', src: services,
             field: 'not_dispatched', fmt: fmtNum},
            {key: 'lag', title: 'Relay lag', src: services, field: 'lag_ms', fmt: fmtMs,
             floor: 1000},
            {key: 'depth', title: 'Queue depth', src: queues, field: 'depth', fmt: fmtNum},
            {key: 'handled', title: 'Handled per second', src: queues,
             field: 'handled_per_second', fmt: fmtRate},
            {key: 'dead', title: 'Dead letters', src: queues, field: 'dead_letters',
             fmt: fmtNum},
        ];
        var box = $('charts');
        defs.forEach(function (d) {
            var names = Object.keys(d.src).sort();
            var data = [at];
            names.forEach(function (n) {
                var arr = (d.src[n] && d.src[n][d.field]) || [];
                var backlog = (d.src[n] && d.src[n].not_dispatched) || [];
                data.push(at.map(function (_, i) {
                    var v = arr[i] === undefined ? null : arr[i];
                    /* No lag figure with nothing to relay: the relay is level. */
                    if (v === null && d.field === 'lag_ms' && backlog[i] === 0)
                        v = 0;
                    return v;
                }));
            });
            drawChart(box, d, names, data);
        });
    }

    function drawChart(box, d, names, data) {
        var sig = names.join('\n');
        var entry = state.charts[d.key];
        if (!entry) {
            var fig = el('figure', {className: 'chart', id: 'chart-' + d.key,
                                    'aria-label': d.title + ' over the last minutes'},
                         el('figcaption', null, d.title),
                         el('div', {className: 'plot'}));
            box.appendChild(fig);
            entry = state.charts[d.key] = {fig: fig, plot: null, sig: null};
        }
        if (typeof uPlot === 'undefined')
            return;
        if (entry.plot && entry.sig === sig) {
            entry.plot.setData(data);
            return;
        }
        if (entry.plot)
            entry.plot.destroy();
        var holder = entry.fig.querySelector('.plot');
        clear(holder);
        var width = Math.max(260, Math.floor(holder.getBoundingClientRect().width || 380));
        var series = [{}];
        names.forEach(function (n, i) {
            series.push({label: n, stroke: HISTORY_COLORS[i % HISTORY_COLORS.length], width: 1.5,
                         spanGaps: false, points: {show: false},
                         value: function (u, v, si, idx) {
                             /* Cursor away from the chart: the latest value. */
                             if (idx === null || idx === undefined)
                                 v = lastValue(u.data[si]);
                             return v === null || v === undefined ? '—' : d.fmt(v);
                         }});
        });
        entry.plot = new uPlot({
            width: width, height: 150, series: series,
            legend: {show: true, live: true},
            cursor: {drag: {x: false, y: false}},
            scales: {
                /* At least the last minute, so a young history is not
                 * stretched over the whole width. */
                x: {time: true, range: function (u, min, max) {
                    return [Math.min(min, max - 60), max];
                }},
                y: {range: function (u, min, max) {
                    return [0, Math.max(max || 0, d.floor || 1) * 1.1];
                }},
            },
            axes: [{size: 28, font: '11px system-ui, sans-serif'},
                   {size: 62, font: '11px system-ui, sans-serif',
                    values: function (u, vals) {
                        return vals.map(function (v) { return d.fmt(v); });
                    }}],
        }, data, holder);
        entry.sig = sig;
    }

    function lastValue(arr) {
        for (var i = (arr || []).length - 1; i >= 0; i--)
            if (arr[i] !== null && arr[i] !== undefined)
                return arr[i];
        return null;
    }

    function fillServiceSelect(ov) {
        var sel = $('ob-service');
        var names = (ov.services || []).map(function (s) { return s.name; });
        var have = Array.prototype.map.call(sel.options, function (o) { return o.value; });
        if (have.join('\n') === names.join('\n'))
            return;
        var cur = sel.value || state.outbox.service;
        clear(sel);
        names.forEach(function (n) { sel.appendChild(el('option', {value: n}, n)); });
        if (names.indexOf(cur) >= 0)
            sel.value = cur;
    }

    function fillQueueSelect(ov) {
        var sel = $('dlq-queue');
        var qs = ov.queues || [];
        var cur = sel.value || state.dlq.queue;
        var labels = qs.map(function (qu) {
            return qu.name + (qu.dead_letters ? ' (' + qu.dead_letters + ' dead)' : '');
        });
        var have = Array.prototype.map.call(sel.options, function (o) { return o.textContent; });
        /* Rebuilt only when something changed, so an open list stays open. */
        if (have.join('\n') === labels.join('\n'))
            return;
        clear(sel);
        qs.forEach(function (qu, i) {
            sel.appendChild(el('option', {value: qu.name}, labels[i]));
        });
        if (qs.some(function (qu) { return qu.name === cur; }))
            sel.value = cur;
    }

    /* ---- outbox browser ---- */

    function outboxParams() {
        return {
            service: $('ob-service').value,
            topic: $('ob-topic').value.trim(),
            aggregate_id: $('ob-aggregate').value.trim(),
            state: $('ob-state').value,
            older_than: $('ob-older').value.trim(),
            limit: $('ob-limit').value.trim(),
        };
    }

    /* Loads a page of the outbox; after is the after_seq (null: first page). */
    function loadOutbox(after) {
        var p = state.outbox.params;
        if (!p || !p.service)
            return Promise.resolve();
        var params = {};
        Object.keys(p).forEach(function (k) { params[k] = p[k]; });
        if (params.state === 'all')
            delete params.state;
        params.after_seq = after;
        hideError($('outbox-error'));
        return api('GET', '/api/outbox' + q(params)).then(function (doc) {
            state.outbox.next = doc.next_after_seq;
            state.outbox.current = after;
            renderOutbox(doc);
        }, function (err) {
            showError($('outbox-error'), err, 'Listing the outbox');
        });
    }

    function renderOutbox(doc) {
        var tb = clear($('outbox-table').tBodies[0]);
        var msgs = doc.messages || [];
        msgs.forEach(function (m) {
            var stateCell = el('td', null,
                               m.dispatched ? badge('dispatched', 'ok') : badge('pending', 'warn'));
            if (m.dispatch_count > 1)
                append(stateCell, ' ', el('span', {className: 'muted'}, '×' + m.dispatch_count));
            var acts = el('td', {className: 'acts'},
                          button('View', function () { openMessage(doc.service, m.message_id); },
                                 {ariaLabel: 'View message ' + m.message_id}));
            if (!m.dispatched)
                append(acts, ' ', button('Dispatch now', function (ev) {
                    dispatchMessage(doc.service, m.message_id, ev.target, $('outbox-error'));
                }, {action: true, ariaLabel: 'Dispatch message ' + m.message_id}));
            tb.appendChild(el('tr', {'data-message-id': m.message_id},
                              el('td', {className: 'num'}, String(m.seq)),
                              el('td', null, m.topic),
                              el('td', null, idSpan(m.aggregate_id)),
                              el('td', null, traceLink(m.correlation_id)),
                              timeCell(m.created_at),
                              stateCell, acts));
        });
        if (!msgs.length)
            tb.appendChild(el('tr', null, el('td', {colspan: 7, className: 'muted'},
                                              'No messages match.')));
        $('ob-next').disabled = doc.next_after_seq === null || doc.next_after_seq === undefined;
        $('ob-first').disabled = state.outbox.current === null;
        $('ob-prev').disabled = state.outbox.current === null;
        $('ob-count').textContent = msgs.length + ' message' + (msgs.length === 1 ? '' : 's') +
                                    ' of ' + doc.service +
                                    (doc.outbox_mode ? ' (' + doc.outbox_mode + ' outbox)' : '') +
                                    (state.outbox.current !== null
                                         ? ', after seq ' + state.outbox.current : '');
        applyActionState();
    }

    function openMessage(service, id) {
        var view = $('message-view');
        hideError($('message-error'));
        return api('GET', '/api/outbox/' + seg(service) + '/' + seg(id)).then(function (m) {
            view.hidden = false;
            view.dataset.service = service;
            view.dataset.messageId = m.message_id;
            var dl = clear($('message-fields'));
            var fields = [
                ['Service', service], ['Message id', m.message_id], ['Seq', m.seq],
                ['Topic', m.topic], ['Aggregate id', m.aggregate_id],
                ['Correlation id', traceLink(m.correlation_id)], ['Source', m.source],
                ['Created', m.created_at],
                ['State', m.dispatched ? 'dispatched (' + m.dispatch_count + '×, last ' +
                                             fmtTime(m.last_dispatched_at) + ')'
                                       : 'not dispatched'],
            ];
            fields.forEach(function (f) {
                dl.appendChild(el('dt', null, f[0]));
                var v = f[1];
                dl.appendChild(el('dd', null, v === null || v === undefined || v === ''
                                                   ? '—' : (typeof v === 'object' ? v
                                                                                  : String(v))));
            });
            $('message-envelope').textContent = JSON.stringify(m.envelope, null, 2);
            var d = $('message-dispatch');
            d.hidden = !!m.dispatched;
            d.dataset.never = m.dispatched ? '1' : '0';
            applyActionState();
            view.scrollIntoView({block: 'nearest'});
        }, function (err) {
            view.hidden = false;
            clear($('message-fields'));
            $('message-envelope').textContent = '';
            $('message-dispatch').hidden = true;
            showError($('message-error'), err, 'Reading the message');
        });
    }

    function dispatchMessage(service, id, btn, box) {
        if (btn)
            btn.dataset.busy = '1';
        applyActionState();
        return api('POST', '/api/outbox/' + seg(service) + '/' + seg(id) + '/dispatch', {})
            .then(function () {
                return loadOutbox(state.outbox.current);
            }, function (err) {
                showError(box, err, 'Dispatch');
            })
            .then(function () {
                if (btn)
                    btn.dataset.busy = '0';
                var view = $('message-view');
                if (!view.hidden && view.dataset.messageId === id)
                    return openMessage(service, id);
                applyActionState();
            });
    }

    /* ---- trace ---- */

    function loadTrace(cid) {
        $('trace-input').value = cid;
        hideError($('trace-error'));
        var tl = clear($('trace-timeline'));
        var sum = clear($('trace-summary'));
        var wait = clear($('trace-waiting'));
        if (!cid)
            return Promise.resolve();
        append(sum, el('p', {className: 'muted'}, 'Loading…'));
        return api('GET', '/api/trace/' + seg(cid)).then(function (doc) {
            renderTrace(doc, tl, sum, wait);
        }, function (err) {
            clear(sum);
            showError($('trace-error'), err, 'Trace');
        });
    }

    function renderTrace(doc, tl, sum, wait) {
        clear(sum);
        var entries = doc.entries || [];
        var waiting = doc.waiting || [];
        var waitSet = {};
        waiting.forEach(function (id) { waitSet[id] = true; });
        append(sum, el('p', null, el('span', {className: 'label'}, 'Correlation id '),
                       el('code', {id: 'trace-cid'}, doc.correlation_id), ' · ',
                       entries.length + ' entr' + (entries.length === 1 ? 'y' : 'ies') +
                       ' across ' + (doc.services || []).map(function (s) {
                           return s.name;
                       }).join(', ')));
        (doc.services || []).forEach(function (s) {
            if (s.truncated)
                append(sum, el('p', {className: 'warn-text'},
                               s.name + ': more entries than the limit; showing the first.'));
        });
        if (!entries.length) {
            append(sum, el('p', {className: 'muted'}, 'No outbox message or inbox entry has ' +
                                                      'this correlation id.'));
            return;
        }
        var t0 = entries[0].at_ms;
        entries.forEach(function (e, i) {
            var isOut = e.kind === 'outbox';
            var li = el('li', {className: 'step ' + (isOut ? 'out' : 'in') +
                                          (waitSet[e.message_id] ? ' waiting' : ''),
                               'data-topic': e.topic, 'data-kind': e.kind});
            var rel = (typeof e.at_ms === 'number' && typeof t0 === 'number')
                          ? '+' + fmtMs(e.at_ms - t0) : '';
            append(li,
                   el('div', {className: 'when'}, el('span', {title: e.time}, fmtTime(e.time)),
                      el('span', {className: 'muted rel'}, rel)),
                   el('div', {className: 'what'},
                      el('span', {className: 'svc'}, e.service), ' ',
                      badge(isOut ? 'outbox' : 'inbox', isOut ? 'out' : 'in'), ' ',
                      el('strong', {className: 'topic'}, e.topic || '—'),
                      el('div', {className: 'muted small'},
                         isOut ? ['published, aggregate ', idSpan(e.aggregate_id), ', ',
                                  e.dispatched ? 'dispatched' : 'not dispatched']
                               : ['processed by ', e.subscription || '?',
                                  e.source ? ', from ' + e.source : ''],
                         ' · message ', idSpan(e.message_id))));
            if (waitSet[e.message_id])
                append(li.lastChild, el('div', {className: 'warn-text small'},
                                        e.dispatched ? 'waiting: dispatched, not processed by ' +
                                                           'a traced service'
                                                     : 'waiting: not dispatched yet — is the ' +
                                                           'relay running?'));
            if (i === entries.length - 1)
                li.classList.add('last');
            tl.appendChild(li);
        });
        var last = entries[entries.length - 1];
        append(wait, el('p', {className: 'stop'}, el('span', {className: 'label'}, 'Last step: '),
                        last.service + ' ' + (last.kind === 'outbox' ? 'published ' : 'processed ') +
                            last.topic));
        if (waiting.length)
            append(wait, el('p', {className: 'warn-text'},
                            waiting.length + ' message' + (waiting.length === 1 ? ' is' : 's are') +
                            ' waiting (highlighted above).'));
        else
            append(wait, el('p', {className: 'ok-text'}, 'Nothing is waiting.'));
    }

    /* ---- dead letters ---- */

    function loadGroups(queue) {
        if (!queue)
            return Promise.resolve();
        if (queue !== state.dlq.queue)
            notice('');
        state.dlq.queue = queue;
        hideError($('dlq-error'));
        return api('GET', '/api/queues/' + seg(queue) + '/dlq/groups').then(function (doc) {
            renderGroups(doc);
        }, function (err) {
            clear($('groups-table').tBodies[0]);
            showError($('dlq-error'), err, 'Reading dead letters');
        });
    }

    function renderGroups(doc) {
        var tb = clear($('groups-table').tBodies[0]);
        var groups = doc.groups || [];
        var total = groups.reduce(function (a, g) { return a + (g.count || 0); }, 0);
        $('dlq-summary').textContent = doc.queue + ': ' + total + ' dead letter' +
                                       (total === 1 ? '' : 's') + ' in ' + groups.length +
                                       ' group' + (groups.length === 1 ? '' : 's') +
                                       (doc.truncated ? ' (first ' + doc.scanned +
                                                            ' read only)' : '');
        groups.forEach(function (g) {
            var sample = g.sample || {};
            var cause = el('td', {className: 'cause'}, el('code', null, g.fingerprint),
                           el('div', {className: 'muted small'}, 'sample ',
                              idSpan(sample.message_id), ': ', String(sample.last_error || '')));
            tb.appendChild(el('tr', {'data-group': g.id},
                              el('td', null, el('code', null, g.id)),
                              el('td', {className: 'num'}, fmtNum(g.count)),
                              cause, timeCell(g.first_seen), timeCell(g.last_seen),
                              el('td', {className: 'acts'},
                                 button('Members', function () { loadMembers(doc.queue, g.id); },
                                        {ariaLabel: 'Members of group ' + g.id}), ' ',
                                 button('Redrive', function (ev) {
                                     redrive(doc.queue, {group: g.id}, ev.target);
                                 }, {action: true, className: 'redrive',
                                     ariaLabel: 'Redrive group ' + g.id}), ' ',
                                 button('Purge…', function () { askPurge(doc.queue, g); },
                                        {action: true, className: 'danger-button',
                                         ariaLabel: 'Purge group ' + g.id}))));
        });
        if (!groups.length)
            tb.appendChild(el('tr', null, el('td', {colspan: 6, className: 'muted empty'},
                                              'No dead letters in this queue.')));
        applyActionState();
        if (state.dlq.group && !groups.some(function (g) { return g.id === state.dlq.group; })) {
            $('members').hidden = true;
            state.dlq.group = null;
        }
    }

    function loadMembers(queue, group) {
        state.dlq.group = group;
        var sec = $('members');
        return api('GET', '/api/queues/' + seg(queue) + '/dlq' + q({group: group, limit: 200}))
            .then(function (doc) {
                var list = Array.isArray(doc) ? doc : (doc.messages || []);
                sec.hidden = false;
                $('h-members').textContent = 'Members of group ' + group + ' (' + list.length +
                                             ' shown)';
                $('member-body').hidden = true;
                var tb = clear($('members-table').tBodies[0]);
                list.forEach(function (m) {
                    var body = m.body && typeof m.body === 'object' ? m.body : {};
                    var cid = typeof body.correlationid === 'string' ? body.correlationid : '';
                    tb.appendChild(el('tr', {'data-message-id': m.message_id},
                                      el('td', null, idSpan(m.message_id)),
                                      el('td', null, m.topic),
                                      el('td', null, traceLink(cid)),
                                      el('td', {className: 'num'}, String(m.receive_count)),
                                      el('td', {className: 'err-cell'}, String(m.last_error || '')),
                                      timeCell(m.dead_lettered_at),
                                      el('td', {className: 'acts'},
                                         button('Body', function () { showBody(m); },
                                                {ariaLabel: 'Body of ' + m.message_id}), ' ',
                                         button('Redrive', function (ev) {
                                             redrive(queue, {message_id: m.message_id}, ev.target);
                                         }, {action: true,
                                             ariaLabel: 'Redrive message ' + m.message_id}))));
                });
                if (!list.length)
                    tb.appendChild(el('tr', null, el('td', {colspan: 7, className: 'muted'},
                                                      'No members.')));
                applyActionState();
            }, function (err) {
                showError($('dlq-error'), err, 'Listing dead letters');
            });
    }

    function showBody(m) {
        var pre = $('member-body');
        pre.hidden = false;
        pre.textContent = 'message ' + m.message_id + '\n' +
                          (m.body === undefined ? '(no body)'
                                                : typeof m.body === 'string'
                                                      ? m.body : JSON.stringify(m.body, null, 2));
    }

    function rate() {
        var r = parseFloat($('dlq-rate').value);
        return isFinite(r) && r > 0 ? r : 100;
    }

    function redrive(queue, what, btn) {
        var body = {rate: rate()};
        Object.keys(what).forEach(function (k) { body[k] = what[k]; });
        if (btn)
            btn.dataset.busy = '1';
        applyActionState();
        hideError($('dlq-error'));
        return api('POST', '/api/queues/' + seg(queue) + '/dlq/redrive', body).then(function (job) {
            trackJob(job);
        }, function (err) {
            showError($('dlq-error'), err, 'Redrive');
        }).then(function () {
            if (btn)
                btn.dataset.busy = '0';
            applyActionState();
        });
    }

    function jobLabel(job) {
        var what = job.group ? 'group ' + job.group
                             : job.match ? 'matching "' + job.match + '"'
                                         : job.message_id ? 'message ' + job.message_id : 'all';
        return 'Job ' + job.id + ': redrive ' + what + ' of ' + job.queue + ' at ' +
               job.rate + ' msg/s';
    }

    /* Shows a job and polls GET /api/jobs/{id} until it ends; then the
     * groups are read again. */
    function trackJob(job) {
        $('jobs').hidden = false;
        var li = state.dlq.jobs[job.id];
        if (!li) {
            li = el('li', {'data-job': job.id});
            state.dlq.jobs[job.id] = li;
            var list = $('jobs-list');
            list.insertBefore(li, list.firstChild);
        }
        renderJob(li, job);
        if (job.state !== 'running')
            return finishJob(job);
        setTimeout(function () {
            api('GET', '/api/jobs/' + seg(job.id)).then(trackJob, function (err) {
                renderJob(li, job, err);
            });
        }, 500);
    }

    function finishJob(job) {
        if (job.queue === state.dlq.queue && state.panel === 'dlq')
            loadGroups(job.queue);
        refreshOverview();
    }

    function renderJob(li, job, err) {
        clear(li);
        li.className = 'job ' + job.state;
        var total = job.total || 0;
        var prog = el('progress', {max: total || 1, value: job.state === 'done' && !total ? 1
                                                                                        : job.moved || 0,
                                   'aria-label': 'Job ' + job.id + ' progress'});
        append(li, el('div', null, el('strong', null, jobLabel(job))),
               el('div', {className: 'job-line'}, prog, ' ',
                  el('span', {className: 'job-state'}, job.state), ' · ',
                  el('span', {className: 'job-moved'}, (job.moved || 0) + ' / ' + total + ' moved'),
                  job.ended ? el('span', {className: 'muted'}, ' · ended ' + fmtTime(job.ended))
                            : null));
        if (job.state === 'running')
            append(li, ' ', button('Cancel', function (ev) {
                ev.target.dataset.busy = '1';
                api('POST', '/api/jobs/' + seg(job.id) + '/cancel', {}).catch(function (e) {
                    showError($('dlq-error'), e, 'Cancel');
                });
            }, {action: true}));
        if (job.error)
            append(li, el('div', {className: 'err-text'}, String(job.error)));
        if (err)
            append(li, el('div', {className: 'err-text'}, 'Cannot read the job: ' + err.message));
        applyActionState();
    }

    /* A line under the dead-letter summary saying what an action did. */
    function notice(text) {
        var n = $('dlq-notice');
        n.textContent = text;
        n.hidden = !text;
    }

    var purgeTarget = null;

    function askPurge(queue, g) {
        purgeTarget = {queue: queue, group: g.id};
        $('purge-confirm').hidden = false;
        $('purge-text').textContent = 'This deletes the ' + g.count + ' dead letter' +
                                      (g.count === 1 ? '' : 's') + ' of group ' + g.id + ' in ' +
                                      queue + ' for good. Type the group id (' + g.id +
                                      ') to confirm.';
        $('purge-input').value = '';
        purgeInputChanged();
        $('purge-input').focus();
    }

    function purgeInputChanged() {
        var go = $('purge-go');
        var ok = purgeTarget && $('purge-input').value.trim() === purgeTarget.group;
        go.dataset.never = ok ? '0' : '1';
        go.disabled = !ok || actionBlock() !== '';
    }

    function doPurge(ev) {
        ev.preventDefault();
        if (!purgeTarget)
            return;
        var t = purgeTarget;
        var typed = $('purge-input').value.trim();
        api('POST', '/api/queues/' + seg(t.queue) + '/dlq/purge', {group: t.group, confirm: typed})
            .then(function (res) {
                $('purge-confirm').hidden = true;
                purgeTarget = null;
                notice('Purged ' + res.purged + ' dead letter' + (res.purged === 1 ? '' : 's') +
                       ' of group ' + res.group + ' in ' + res.queue + '.');
                return loadGroups(t.queue).then(refreshOverview);
            }, function (err) {
                showError($('dlq-error'), err, 'Purge');
            });
    }

    /* ---- router ---- */

    var PANELS = ['overview', 'outbox', 'trace', 'dlq'];

    /* #overview, #outbox[/SERVICE], #trace[/ID], #dlq[/QUEUE] */
    function route() {
        var h = location.hash.replace(/^#\/?/, '');
        var slash = h.indexOf('/');
        var name = slash < 0 ? h : h.slice(0, slash);
        var arg = slash < 0 ? '' : decodeURIComponent(h.slice(slash + 1));
        if (PANELS.indexOf(name) < 0)
            name = 'overview';
        state.panel = name;
        document.title = 'txmsg console · ' + $('tab-' + name).textContent;
        PANELS.forEach(function (p) {
            $('panel-' + p).hidden = p !== name;
            var tab = $('tab-' + p);
            if (p === name)
                tab.setAttribute('aria-current', 'page');
            else
                tab.removeAttribute('aria-current');
        });
        if (name === 'trace')
            loadTrace(arg);
        else if (name === 'outbox')
            openOutbox(arg);
        else if (name === 'dlq')
            openDlq(arg);
        else
            Object.keys(state.charts).forEach(function (k) {
                /* Charts drawn while hidden had no width; redraw at size. */
                var c = state.charts[k];
                if (c.plot) {
                    var w = c.fig.querySelector('.plot').getBoundingClientRect().width;
                    if (w > 0)
                        c.plot.setSize({width: Math.floor(w), height: 150});
                }
            });
    }

    function ready() {
        return state.overview ? Promise.resolve() : refreshOverview();
    }

    function openOutbox(service) {
        ready().then(function () {
            if (service)
                $('ob-service').value = service;
            if (!state.outbox.params || service) {
                state.outbox.params = outboxParams();
                state.outbox.back = [];
                loadOutbox(null);
            }
        });
    }

    function openDlq(queue) {
        ready().then(function () {
            var sel = $('dlq-queue');
            if (queue) {
                if (!Array.prototype.some.call(sel.options, function (o) {
                        return o.value === queue;
                    }))
                    sel.appendChild(el('option', {value: queue}, queue));
                sel.value = queue;
            } else if (!sel.value && sel.options.length) {
                /* The first queue with dead letters, else the first. */
                var qs = (state.overview && state.overview.queues) || [];
                var withDl = qs.filter(function (qu) { return qu.dead_letters > 0; })[0];
                sel.value = withDl ? withDl.name : sel.options[0].value;
            }
            loadGroups(sel.value);
            resumeJobs();
        });
    }

    /* Shows the redrive jobs still running (started before a reload, or
     * from another tab) so their progress is not lost. */
    function resumeJobs() {
        api('GET', '/api/jobs').then(function (doc) {
            ((doc && doc.jobs) || []).forEach(function (job) {
                if (job.state === 'running' && !state.dlq.jobs[job.id])
                    trackJob(job);
            });
        }, function () {
            /* Older consoles without the list: nothing to resume. */
        });
    }

    /* ---- start ---- */

    function bind() {
        $('token-input').value = token();
        $('token-form').addEventListener('submit', function (ev) {
            ev.preventDefault();
            setToken($('token-input').value.trim());
        });
        $('token-clear').addEventListener('click', function () {
            $('token-input').value = '';
            setToken('');
        });
        $('outbox-form').addEventListener('submit', function (ev) {
            ev.preventDefault();
            state.outbox.params = outboxParams();
            state.outbox.service = state.outbox.params.service;
            state.outbox.back = [];
            loadOutbox(null);
        });
        $('ob-service').addEventListener('change', function () {
            location.hash = '#outbox/' + encodeURIComponent($('ob-service').value);
        });
        $('ob-first').addEventListener('click', function () {
            state.outbox.back = [];
            loadOutbox(null);
        });
        /* after_seq pages forward only; going back replays the after_seq
         * of the pages passed (back holds them). */
        $('ob-prev').addEventListener('click', function () {
            var prev = state.outbox.back.length ? state.outbox.back.pop() : null;
            loadOutbox(prev);
        });
        $('ob-next').addEventListener('click', function () {
            if (state.outbox.next !== null && state.outbox.next !== undefined) {
                state.outbox.back.push(state.outbox.current);
                loadOutbox(state.outbox.next);
            }
        });
        $('message-close').addEventListener('click', function () {
            $('message-view').hidden = true;
        });
        $('message-dispatch').addEventListener('click', function (ev) {
            var v = $('message-view');
            dispatchMessage(v.dataset.service, v.dataset.messageId, ev.target,
                            $('message-error'));
        });
        $('trace-form').addEventListener('submit', function (ev) {
            ev.preventDefault();
            var cid = $('trace-input').value.trim();
            var target = '#trace/' + encodeURIComponent(cid);
            if (location.hash === target)
                loadTrace(cid);
            else
                location.hash = target;
        });
        $('dlq-form').addEventListener('submit', function (ev) {
            ev.preventDefault();
            var queue = $('dlq-queue').value;
            var target = '#dlq/' + encodeURIComponent(queue);
            if (location.hash === target)
                loadGroups(queue);
            else
                location.hash = target;
        });
        $('dlq-queue').addEventListener('change', function () {
            location.hash = '#dlq/' + encodeURIComponent($('dlq-queue').value);
        });
        $('match-form').addEventListener('submit', function (ev) {
            ev.preventDefault();
            var text = $('match-input').value;
            if (!text || !state.dlq.queue)
                return;
            redrive(state.dlq.queue, {match: text}, ev.submitter || null);
        });
        $('purge-input').addEventListener('input', purgeInputChanged);
        $('purge-form').addEventListener('submit', doPurge);
        $('purge-cancel').addEventListener('click', function () {
            $('purge-confirm').hidden = true;
            purgeTarget = null;
        });
        window.addEventListener('hashchange', route);
        window.addEventListener('resize', function () {
            if (state.panel === 'overview')
                route();
        });
    }

    function start() {
        bind();
        applyActionState();
        refreshOverview().then(function () {
            route();
            schedule();
        });
    }

    if (document.readyState === 'loading')
        document.addEventListener('DOMContentLoaded', start);
    else
        start();
})();
