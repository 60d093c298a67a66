// Admin: users (with permissions), virtual hosts, policies, and definitions export/import.
import { api, del, get, put, seg } from '../api.js';
import { flash, fmtNum, formValues, h, parseJsonField, replace } from '../dom.js';
import { simpleTable } from '../table.js';
import { vhostsChanged } from '../main.js';

const TABS = [
  ['users', 'Users'],
  ['vhosts', 'Virtual hosts'],
  ['policies', 'Policies'],
  ['definitions', 'Definitions'],
];

export async function render(main, [tab = 'users'], ctx) {
  main.append(
    h('div.page-head', h('h1', 'Admin'), h('div.actions', TABS.map(([id, label]) => h(id === tab ? 'button.primary' : 'button', { type: 'button', onclick: () => ctx.go(`#/admin/${id}`) }, label)))),
  );
  const body = h('div');
  main.append(body);
  if (tab === 'users') await users(body);
  else if (tab === 'vhosts') await vhosts(body);
  else if (tab === 'policies') await policies(body, ctx);
  else await definitions(body);
}

function deleteButton(label, onConfirm) {
  return h('button.danger', { type: 'button', onclick: async () => { if (confirm(`${label}?`)) await onConfirm(); } }, 'Delete');
}

async function users(body) {
  const list = h('div.card');
  const refresh = async () => {
    const [rows, perms] = await Promise.all([get('/api/users'), get('/api/permissions')]);
    replace(list, 
      h('h2', 'Users'),
      simpleTable(
        [
          { key: 'name', label: 'Name' },
          { key: 'tags', label: 'Tags', render: (u) => u.tags.map((t) => h('span.tag', t)) },
          { key: 'password', label: 'Password', render: (u) => (u.password_hash === '' ? h('span.muted', 'none') : 'set') },
          {
            key: 'perms',
            label: 'Can access virtual hosts',
            render: (u) => perms.filter((p) => p.user === u.name).map((p) => h('span.tag', { title: `configure ${p.configure} · write ${p.write} · read ${p.read}` }, p.vhost)),
          },
          { key: 'x', label: '', render: (u) => deleteButton(`Delete user ${u.name}`, async () => { await del(`/api/users/${seg(u.name)}`); flash(`User ${u.name} deleted`); refresh(); }) },
        ],
        rows,
      ),
    );
  };
  const addForm = h(
    'form.inline#add-user',
    h('label', 'Name', h('input', { name: 'name', required: true })),
    h('label', 'Password', h('input', { name: 'password', type: 'password', required: true })),
    h('label', 'Tags', h('input', { name: 'tags', placeholder: 'administrator, monitoring, policymaker, management', size: 40 })),
    h('button.primary', { type: 'submit' }, 'Add user'),
  );
  addForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = formValues(addForm);
    try {
      await put(`/api/users/${seg(f.name)}`, { password: f.password, tags: f.tags });
      flash(`User ${f.name} added`);
      addForm.reset();
      refresh();
    } catch (err) {
      flash(err.message, 'error');
    }
  });
  const vhostList = await get('/api/vhosts?columns=name');
  const permForm = h(
    'form.inline#set-permission',
    h('label', 'User', h('input', { name: 'user', required: true })),
    h('label', 'Virtual host', h('select', { name: 'vhost' }, vhostList.map((v) => h('option', { value: v.name }, v.name)))),
    h('label', 'Configure', h('input', { name: 'configure', value: '.*' })),
    h('label', 'Write', h('input', { name: 'write', value: '.*' })),
    h('label', 'Read', h('input', { name: 'read', value: '.*' })),
    h('button', { type: 'submit' }, 'Set permission'),
  );
  permForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = formValues(permForm);
    try {
      await put(`/api/permissions/${seg(f.vhost)}/${seg(f.user)}`, { configure: f.configure, write: f.write, read: f.read });
      flash(`Permissions of ${f.user} in ${f.vhost} set`);
      refresh();
    } catch (err) {
      flash(err.message, 'error');
    }
  });
  body.append(list, h('div.card', h('h2', 'Add a user'), addForm), h('div.card', h('h2', 'Set permissions'), permForm));
  await refresh();
}

async function vhosts(body) {
  const list = h('div.card');
  const refresh = async () => {
    const rows = await get('/api/vhosts');
    replace(list, 
      h('h2', 'Virtual hosts'),
      simpleTable(
        [
          { key: 'name', label: 'Name' },
          { key: 'description', label: 'Description' },
          { key: 'tags', label: 'Tags', render: (v) => v.tags.map((t) => h('span.tag', t)) },
          { key: 'messages', label: 'Messages', num: true, render: (v) => fmtNum(v.messages) },
          { key: 'x', label: '', render: (v) => deleteButton(`Delete virtual host ${v.name} and everything in it`, async () => { await del(`/api/vhosts/${seg(v.name)}`); flash(`Virtual host ${v.name} deleted`); vhostsChanged(); refresh(); }) },
        ],
        rows,
      ),
    );
  };
  const form = h(
    'form.inline#add-vhost',
    h('label', 'Name', h('input', { name: 'name', required: true })),
    h('label', 'Description', h('input', { name: 'description' })),
    h('label', 'Tags', h('input', { name: 'tags', placeholder: 'comma separated' })),
    h('button.primary', { type: 'submit' }, 'Add virtual host'),
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = formValues(form);
    try {
      await put(`/api/vhosts/${seg(f.name)}`, { description: f.description, tags: f.tags });
      flash(`Virtual host ${f.name} added`);
      form.reset();
      vhostsChanged();
      refresh();
    } catch (err) {
      flash(err.message, 'error');
    }
  });
  body.append(list, h('div.card', h('h2', 'Add a virtual host'), form));
  await refresh();
}

async function policies(body, ctx) {
  const list = h('div.card');
  const refresh = async () => {
    const [userPolicies, operatorPolicies] = await Promise.all([get('/api/policies'), get('/api/operator-policies')]);
    const columns = (kind) => [
      { key: 'vhost', label: 'Virtual host' },
      { key: 'name', label: 'Name' },
      { key: 'pattern', label: 'Pattern', render: (p) => h('span.mono', p.pattern) },
      { key: 'apply-to', label: 'Apply to' },
      { key: 'definition', label: 'Definition', render: (p) => h('span.mono', JSON.stringify(p.definition)) },
      { key: 'priority', label: 'Priority', num: true },
      { key: 'x', label: '', render: (p) => deleteButton(`Delete policy ${p.name}`, async () => { await del(`/api/${kind}/${seg(p.vhost)}/${seg(p.name)}`); flash(`Policy ${p.name} deleted`); refresh(); }) },
    ];
    replace(list, h('h2', 'Policies'), simpleTable(columns('policies'), userPolicies, 'No policies'), h('h3', 'Operator policies'), simpleTable(columns('operator-policies'), operatorPolicies, 'No operator policies'));
  };
  const vhostList = await get('/api/vhosts?columns=name');
  const form = h(
    'form.stack#add-policy',
    h('label', 'Virtual host', h('select', { name: 'vhost' }, vhostList.map((v) => h('option', { value: v.name, selected: v.name === (ctx.vhost() || '/') ? true : undefined }, v.name)))),
    h('label', 'Name', h('input', { name: 'name', required: true })),
    h('label', 'Pattern (regular expression on names)', h('input', { name: 'pattern', required: true, placeholder: '^orders\\.' })),
    h('label', 'Apply to', h('select', { name: 'apply' }, ['all', 'queues', 'exchanges'].map((a) => h('option', { value: a }, a)))),
    h('label', 'Priority', h('input', { name: 'priority', type: 'number', value: 0 })),
    h('label', 'Definition (JSON)', h('textarea', { name: 'definition', placeholder: '{"max-length": 10000, "dead-letter-exchange": "dlx"}' })),
    h('label.check', h('input', { type: 'checkbox', name: 'operator' }), 'Operator policy (caps only)'),
    h('div', h('button.primary', { type: 'submit' }, 'Set policy')),
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = formValues(form);
    try {
      await put(`/api/${f.operator ? 'operator-policies' : 'policies'}/${seg(f.vhost)}/${seg(f.name)}`, { pattern: f.pattern, 'apply-to': f.apply, priority: Number(f.priority), definition: parseJsonField(f.definition, 'Definition') });
      flash(`Policy ${f.name} set`);
      refresh();
    } catch (err) {
      flash(err.message, 'error');
    }
  });
  body.append(list, h('div.card', h('h2', 'Add or update a policy'), form));
  await refresh();
}

async function definitions(body) {
  const status = h('p.muted#definitions-status');
  const download = h(
    'button.primary#export-definitions',
    {
      type: 'button',
      onclick: async () => {
        const defs = await get('/api/definitions');
        const blob = new Blob([JSON.stringify(defs, null, 2)], { type: 'application/json' });
        const a = h('a', { href: URL.createObjectURL(blob), download: `warren-definitions-${new Date().toISOString().slice(0, 10)}.json` });
        document.body.append(a);
        a.click();
        a.remove();
        status.textContent = `Exported ${defs.queues.length} queues, ${defs.exchanges.length} exchanges, ${defs.bindings.length} bindings, ${defs.users.length} users.`;
      },
    },
    'Download definitions',
  );
  const file = h('input#import-file', { type: 'file', accept: 'application/json,.json' });
  const importButton = h(
    'button#import-definitions',
    {
      type: 'button',
      onclick: async () => {
        const f = file.files && file.files[0];
        if (!f) return flash('Choose a definitions file first', 'error');
        try {
          const text = await f.text();
          JSON.parse(text);
          await api('POST', '/api/definitions', text);
          status.textContent = `Imported ${f.name}.`;
          flash('Definitions imported');
          vhostsChanged();
        } catch (err) {
          status.textContent = `Import failed: ${err.message}`;
          flash(err.message, 'error');
        }
      },
    },
    'Import',
  );
  body.append(
    h('div.card', h('h2', 'Export'), h('p', "All users, virtual hosts, permissions, policies, queues, exchanges and bindings, in RabbitMQ's definitions format."), download),
    h('div.card', h('h2', 'Import'), h('p', 'A definitions file exported from Warren or RabbitMQ. Objects that already exist are kept as they are.'), h('div.toolbar', file, importButton)),
    status,
  );
}
