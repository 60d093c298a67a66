import { badRequest, HttpError } from './errors';

export type View = Record<string, unknown>;

/** RabbitMQ caps page_size at 500; the default is 100. */
const MAX_PAGE_SIZE = 500;
const DEFAULT_PAGE_SIZE = 100;

interface Paging {
  page: number;
  pageSize: number;
  name: string | undefined;
  useRegex: boolean;
}

export interface ListQuery {
  sort: string[] | undefined;
  reverse: boolean;
  columns: string[][] | undefined;
  paging: Paging | undefined;
}

/** sort, sort_reverse, columns, page, page_size, name, use_regex, as the management API reads them. */
export function parseListQuery(q: URLSearchParams): ListQuery {
  const sort = q.get('sort');
  const columns = q.get('columns');
  return {
    sort: sort === null || sort === '' ? undefined : sort.split('.'),
    reverse: q.get('sort_reverse') === 'true',
    columns: columns === null || columns === '' ? undefined : columns.split(',').filter((c) => c !== '').map((c) => c.split('.')),
    paging: parsePaging(q),
  };
}

function parsePaging(q: URLSearchParams): Paging | undefined {
  const pageText = q.get('page');
  if (pageText === null) return undefined;
  const sizeText = q.get('page_size');
  if (!/^-?\d+$/.test(pageText) || (sizeText !== null && !/^-?\d+$/.test(sizeText))) {
    throw badRequest('Pagination parameters are invalid');
  }
  const page = Number(pageText);
  const pageSize = sizeText === null ? DEFAULT_PAGE_SIZE : Number(sizeText);
  if (page < 1 || pageSize < 1 || pageSize > MAX_PAGE_SIZE) {
    throw new HttpError(400, 'invalid_pagination_parameters', `Invalid pagination parameters: page number ${page}, page size ${sizeText ?? 'undefined'}`);
  }
  const name = q.get('name');
  return { page, pageSize, name: name === null || name === '' ? undefined : name, useRegex: q.get('use_regex') === 'true' };
}

/**
 * Sorts, filters, paginates and projects a list of views. Without `page` the answer is the
 * array itself; with it, RabbitMQ's envelope (items, page, page_count, filtered_count, ...).
 */
export function renderList(views: View[], query: ListQuery, defaultSort: string[][] = [['vhost'], ['name']]): unknown {
  const total = views.length;
  let items = views;
  const paging = query.paging;
  if (paging?.name !== undefined) items = items.filter(nameFilter(paging.name, paging.useRegex));
  const keys = query.sort !== undefined ? [query.sort] : defaultSort;
  items = sortViews(items, keys, query.reverse);
  if (paging === undefined) return project(items, query.columns);
  const filtered = items.length;
  const pageCount = Math.ceil(filtered / paging.pageSize);
  if (paging.page > 1 && paging.page > pageCount) {
    throw new HttpError(400, 'page_out_of_range', `Page out of range, page: ${paging.page} page size: ${paging.pageSize}, len: ${filtered}`);
  }
  const start = (paging.page - 1) * paging.pageSize;
  const page = items.slice(start, start + paging.pageSize);
  return {
    filtered_count: filtered,
    item_count: page.length,
    items: project(page, query.columns),
    page: paging.page,
    page_count: pageCount,
    page_size: paging.pageSize,
    total_count: total,
  };
}

/** Like renderList for a single object: only `columns` applies. */
export function renderOne(view: View, query: ListQuery): View {
  return query.columns === undefined ? view : projectOne(view, query.columns);
}

function nameFilter(name: string, useRegex: boolean): (v: View) => boolean {
  if (useRegex) {
    let re: RegExp;
    try {
      re = new RegExp(name, 'i');
    } catch {
      throw badRequest('Pagination parameters are invalid');
    }
    return (v) => typeof v.name === 'string' && re.test(v.name);
  }
  const needle = name.toLowerCase();
  return (v) => typeof v.name === 'string' && v.name.toLowerCase().includes(needle);
}

function pathValue(v: unknown, path: string[]): unknown {
  let cur = v;
  for (const p of path) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[p];
  }
  return cur;
}

/** Erlang term order, roughly: numbers before strings before everything else; missing last. */
function rank(x: unknown): number {
  if (typeof x === 'number') return 0;
  if (typeof x === 'string') return 1;
  if (x === undefined || x === null) return 3;
  return 2;
}

function compare(a: unknown, b: unknown): number {
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra - rb;
  if (ra === 0) return (a as number) - (b as number);
  if (ra === 1) return (a as string) < (b as string) ? -1 : (a as string) > (b as string) ? 1 : 0;
  if (ra === 2) {
    const sa = JSON.stringify(a);
    const sb = JSON.stringify(b);
    return sa < sb ? -1 : sa > sb ? 1 : 0;
  }
  return 0;
}

function sortViews(items: View[], keys: string[][], reverse: boolean): View[] {
  const keyed = items.map((v, i) => ({ v, i, k: keys.map((p) => pathValue(v, p)) }));
  keyed.sort((a, b) => {
    for (let j = 0; j < keys.length; j++) {
      const c = compare(a.k[j], b.k[j]);
      if (c !== 0) return reverse ? -c : c;
    }
    return a.i - b.i;
  });
  return keyed.map((x) => x.v);
}

function project(items: View[], columns: string[][] | undefined): View[] {
  if (columns === undefined) return items;
  return items.map((v) => projectOne(v, columns));
}

function projectOne(v: View, columns: string[][]): View {
  const out: View = {};
  for (const path of columns) {
    const value = pathValue(v, path);
    if (value === undefined) continue;
    let target = out;
    for (let i = 0; i < path.length - 1; i++) {
      const p = path[i]!;
      const next = target[p];
      if (typeof next !== 'object' || next === null) target[p] = {};
      target = target[p] as View;
    }
    target[path[path.length - 1]!] = value;
  }
  return out;
}
