// Lists of API objects with server-side sorting, filtering and pagination (page, page_size,
// name, use_regex, sort, sort_reverse, columns), so a vhost with 10 000 queues stays fast.
import { h, clear, replace } from './dom.js';
import { get } from './api.js';

/**
 * options: {
 *   path: () => '/api/queues/%2F',       // list endpoint
 *   columns: [{ key, label, sort, num, render(row) }],
 *   fetchColumns: 'name,vhost,...',      // the API's columns parameter (optional)
 *   sort: 'name', pageSize: 25,
 *   actions: (row) => node,              // optional trailing cell
 *   empty: 'No queues',
 * }
 */
export function listView(options) {
  const state = { page: 1, pageSize: options.pageSize || 25, sort: options.sort || 'name', reverse: false, name: '', regex: false };
  const tbody = h('tbody');
  const info = h('span.muted');
  const pageLabel = h('span');
  const head = h('tr');
  const filter = h('input', { type: 'search', placeholder: 'Filter by name', 'aria-label': 'Filter by name' });
  const regex = h('input', { type: 'checkbox' });
  const size = h('select', { 'aria-label': 'Page size' }, [10, 25, 50, 100, 500].map((n) => h('option', { value: n, selected: n === state.pageSize ? true : undefined }, `${n} per page`)));
  const prev = h('button', { type: 'button' }, '‹ Prev');
  const next = h('button', { type: 'button' }, 'Next ›');
  let pageCount = 1;
  let timer;

  filter.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      state.name = filter.value;
      state.page = 1;
      refresh();
    }, 250);
  });
  regex.addEventListener('change', () => {
    state.regex = regex.checked;
    state.page = 1;
    refresh();
  });
  size.addEventListener('change', () => {
    state.pageSize = Number(size.value);
    state.page = 1;
    refresh();
  });
  prev.addEventListener('click', () => {
    if (state.page > 1) {
      state.page--;
      refresh();
    }
  });
  next.addEventListener('click', () => {
    if (state.page < pageCount) {
      state.page++;
      refresh();
    }
  });

  function renderHead() {
    clear(head);
    for (const c of options.columns) {
      const sortable = c.sort !== undefined;
      const arrow = sortable && state.sort === c.sort ? h('span.arrow', state.reverse ? '▼' : '▲') : null;
      const th = h(`th${sortable ? '.sortable' : ''}${c.num ? '.num' : ''}`, { scope: 'col' }, c.label, arrow);
      if (sortable) {
        th.addEventListener('click', () => {
          if (state.sort === c.sort) state.reverse = !state.reverse;
          else {
            state.sort = c.sort;
            state.reverse = Boolean(c.num);
          }
          refresh();
        });
      }
      head.append(th);
    }
    if (options.actions) head.append(h('th'));
  }

  async function refresh() {
    const q = new URLSearchParams({ page: String(state.page), page_size: String(state.pageSize), sort: state.sort, sort_reverse: String(state.reverse) });
    if (state.name !== '') {
      q.set('name', state.name);
      q.set('use_regex', String(state.regex));
    }
    if (options.fetchColumns) q.set('columns', options.fetchColumns);
    let res;
    try {
      res = await get(`${options.path()}?${q}`);
    } catch (err) {
      if (err.body && err.body.error === 'page_out_of_range' && state.page > 1) {
        state.page = 1;
        return refresh();
      }
      replace(tbody, h('tr', h('td.empty.error', { colspan: options.columns.length + 1 }, err.message)));
      return;
    }
    renderHead();
    pageCount = Math.max(1, res.page_count);
    clear(tbody);
    if (res.items.length === 0) tbody.append(h('tr', h('td.empty', { colspan: options.columns.length + 1 }, options.empty || 'Nothing here')));
    for (const row of res.items) {
      const tr = h('tr');
      for (const c of options.columns) {
        const v = c.render ? c.render(row) : row[c.key];
        tr.append(h(`td${c.num ? '.num' : ''}`, v === undefined || v === null ? '' : v));
      }
      if (options.actions) tr.append(h('td', options.actions(row)));
      tbody.append(tr);
    }
    info.textContent = res.filtered_count === res.total_count ? `${res.total_count} total` : `${res.filtered_count} of ${res.total_count} match`;
    pageLabel.textContent = `Page ${res.page} of ${pageCount}`;
    prev.disabled = state.page <= 1;
    next.disabled = state.page >= pageCount;
  }

  const el = h(
    'div.list-view',
    h('div.toolbar', filter, h('label.check', regex, 'Regex'), h('span.grow'), info, size, h('span.pager', prev, pageLabel, next)),
    h('table.list', h('thead', head), tbody),
  );
  renderHead();
  return { el, refresh };
}

/** A plain table for small, already-loaded lists (bindings, consumers, permissions). */
export function simpleTable(columns, rows, empty = 'Nothing here') {
  const body = rows.length === 0
    ? [h('tr', h('td.empty', { colspan: columns.length }, empty))]
    : rows.map((row) => h('tr', columns.map((c) => h(`td${c.num ? '.num' : ''}`, (c.render ? c.render(row) : row[c.key]) ?? ''))));
  return h('table.list', h('thead', h('tr', columns.map((c) => h(`th${c.num ? '.num' : ''}`, c.label)))), h('tbody', body));
}
