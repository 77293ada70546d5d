// user-api admin console: a client of the public API and nothing more.
// Every value from the server is rendered with textContent (never as HTML); the API key
// lives in sessionStorage only and travels as Authorization: Bearer. Edits and deletes
// send If-Match with the ETag of the user as the page last read it, so a change someone
// else made meanwhile is answered 412 instead of being overwritten.
'use strict';
(function () {
  var KEY = 'user-api-key';
  var PAGE = 50;
  var FIELDS = ['first_name', 'last_name', 'email'];
  var REASONS = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
    409: 'Conflict', 412: 'Precondition Failed', 413: 'Content Too Large',
    415: 'Unsupported Media Type', 428: 'Precondition Required', 429: 'Too Many Requests', 500: 'Internal Server Error', 503: 'Service Unavailable' };

  var state = {
    after: null,    // after_id of the page shown (null: the first page)
    stack: [],      // after_ids of the pages before it, for Previous
    next: null,     // next_after_id of the page shown
    email: null,    // the email searched for, when finding
    editing: null,  // the user being edited, as the server last sent it
    etag: null,     // that user's ETag, sent as If-Match with the PATCH
    editGen: 0,     // bumped per user opened (or closed), so a stale answer is dropped
    resume: null,   // what to run again once a key is entered
    listGen: 0      // bumped per list load, so a stale answer is dropped
  };

  function $(id) { return document.getElementById(id); }

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function say(text, kind) {
    var s = $('status');
    s.textContent = text;
    s.className = 'status' + (kind ? ' ' + kind : '');
  }

  function key() {
    try { return sessionStorage.getItem(KEY); } catch (e) { return null; }
  }

  function setKey(value) {
    var changed = value !== key();
    try {
      if (value) sessionStorage.setItem(KEY, value); else sessionStorage.removeItem(KEY);
    } catch (e) { /* storage disabled: the key lasts until reload */ }
    // Another key may have other scopes: show the write actions until it is refused too.
    if (changed) readOnly(false);
    showKeyState();
  }

  function showKeyState() {
    var has = !!key();
    $('key-state').textContent = has ? 'API key set (this tab only)' : 'No API key';
    $('key-forget').hidden = !has;
  }

  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  function describe(r) {
    var msg = r.data && typeof r.data.error === 'string' ? r.data.error : '';
    return r.status + ' ' + (REASONS[r.status] || 'Error') + (msg ? ': ' + msg : '');
  }

  // Stop: a 401 or 403 was handled (dialog or read-only mode); the caller just ends.
  var STOP = { stop: true };

  // One request to the API. GETs, PATCHes and DELETEs (idempotent) are retried with
  // back-off while the database is unavailable (503) or the server unreachable; a POST
  // is not, since it might have been applied. ifMatch: the ETag a write depends on.
  async function call(method, path, body, alive, ifMatch) {
    var delay = 1000;
    for (;;) {
      var headers = { 'Accept': 'application/json' };
      var k = key();
      if (k) headers['Authorization'] = 'Bearer ' + k;
      if (ifMatch) headers['If-Match'] = ifMatch;
      var init = { method: method, headers: headers, cache: 'no-store', redirect: 'error' };
      if (body !== undefined) {
        headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(body);
      }
      var r = null, down;
      try {
        var resp = await fetch(path, init);
        var data = null;
        if (resp.status !== 204) {
          try { data = await resp.json(); } catch (e) { data = null; }
        }
        r = { status: resp.status, data: data, etag: resp.headers.get('ETag'),
          retryAfter: Number(resp.headers.get('Retry-After')) || 0 };
        down = r.status === 503 ? 'database unavailable' : null;
      } catch (e) {
        down = 'server unreachable';
      }
      if (alive && !alive()) throw STOP;
      if (!down) break;
      if (method === 'POST') {
        // The server may have stored it before failing to answer: let the person look
        // at the list before sending it again, rather than risk a duplicate.
        say(down + ': the user may not have been created; check the list, then try again.', 'error');
        throw STOP;
      }
      var wait = Math.max(delay, (r && r.retryAfter || 0) * 1000);
      say(down + ', retrying in ' + Math.round(wait / 1000) + ' s', 'warn');
      await sleep(wait);
      if (alive && !alive()) throw STOP;
      delay = Math.min(delay * 2, 30000);
    }
    if (r.status === 401) { unauthorized(r); throw STOP; }
    if (r.status === 403) { forbidden(r); throw STOP; }
    return r;
  }

  function unauthorized(r) {
    var had = !!key();
    setKey(null);
    var text = had ? 'The API key was refused: ' + describe(r) + '.'
      : 'This server needs an API key (' + describe(r) + ').';
    say(describe(r), 'error');
    $('key-message').textContent = text;
    $('key-input').value = '';
    var d = $('key-dialog');
    if (!d.open) d.showModal();
    $('key-input').focus();
  }

  function readOnly(on) {
    document.body.classList.toggle('read-only', on);
    $('read-only-note').hidden = !on;
  }

  function forbidden(r) {
    readOnly(true);
    endEdit();
    say(describe(r) + '. Creating, editing and deleting are hidden.', 'error');
  }

  // The list --------------------------------------------------------------------------

  function listQuery() {
    var q = 'limit=' + PAGE;
    if (state.email !== null) return q + '&email=' + encodeURIComponent(state.email);
    if (state.after !== null) q += '&after_id=' + state.after;
    return q;
  }

  async function loadList() {
    var gen = ++state.listGen;
    state.resume = loadList;
    say('Loading\u2026');
    var r;
    try {
      r = await call('GET', '/users?' + listQuery(), undefined, function () { return gen === state.listGen; });
    } catch (e) {
      if (e === STOP) return;
      throw e;
    }
    if (r.status !== 200 || !r.data || !Array.isArray(r.data.users)) {
      say(describe(r), 'error');
      return;
    }
    var users = r.data.users;
    render(users);
    state.next = state.email === null ? r.data.next_after_id : null;
    var page = state.stack.length + 1;
    $('prev').disabled = state.after === null;
    $('next').disabled = state.next === null || state.next === undefined;
    var info = [el('span', state.email !== null ? 'Search results' : 'Page ' + page)];
    if (state.email === null && users.length) {
      info.push(el('span', ' \u00b7 ids ' + users[0].id + '\u2013' + users[users.length - 1].id, 'ids'));
    }
    $('page-info').replaceChildren.apply($('page-info'), info);
    if (state.email !== null) {
      say(users.length ? 'Found ' + users.length + ' user with that email.' : 'No user has that email.');
    } else {
      say(users.length + (users.length === 1 ? ' user' : ' users') + ' on this page.');
    }
  }

  function render(users) {
    var rows = [];
    users.forEach(function (u) {
      var tr = el('tr');
      tr.dataset.id = String(u.id);
      [['ID', u.id], ['First name', u.first_name], ['Last name', u.last_name], ['Email', u.email]]
        .forEach(function (c) {
          var td = el('td', c[1] === null ? '\u2014' : c[1]);
          td.setAttribute('data-label', c[0]);
          if (c[1] === null) td.className = 'none';
          tr.appendChild(td);
        });
      var act = el('td', null, 'act');
      var name = u.first_name + ' ' + u.last_name;
      var edit = el('button', 'Edit', 'write');
      edit.type = 'button';
      edit.setAttribute('aria-label', 'Edit ' + name);
      edit.addEventListener('click', function () { startEdit(u.id); });
      var del = el('button', 'Delete', 'write danger');
      del.type = 'button';
      del.setAttribute('aria-label', 'Delete ' + name);
      del.addEventListener('click', function () { confirmDelete(u.id); });
      act.appendChild(edit);
      act.appendChild(del);
      tr.appendChild(act);
      rows.push(tr);
    });
    $('rows').replaceChildren.apply($('rows'), rows);
    $('empty').hidden = users.length > 0;
  }

  function nextPage() {
    if (state.next === null) return;
    state.stack.push(state.after);
    state.after = state.next;
    loadList();
  }

  function prevPage() {
    if (state.after === null) return;
    state.after = state.stack.length ? state.stack.pop() : null;
    loadList();
  }

  function showAll() {
    state.email = null;
    state.after = null;
    state.stack = [];
    $('find-email').value = '';
    loadList();
  }

  // Create and edit -------------------------------------------------------------------

  function input(f) { return $('f-' + f); }

  function clearErrors() {
    FIELDS.forEach(function (f) {
      $('e-' + f).textContent = '';
      input(f).removeAttribute('aria-invalid');
    });
    $('e-form').textContent = '';
    $('reload-user').hidden = true;
  }

  function fieldError(field, text) {
    if (FIELDS.indexOf(field) < 0) {
      $('e-form').textContent = text;
      return;
    }
    $('e-' + field).textContent = text;
    input(field).setAttribute('aria-invalid', 'true');
    input(field).focus();
  }

  // Reads one user with its ETag: a list page carries none, and a write must name the
  // version the person saw. Resolves to the user, or null once the failure is shown.
  async function readUser(id, alive) {
    var r;
    try {
      r = await call('GET', '/users/' + id, undefined, alive);
    } catch (e) {
      if (e === STOP) return null;
      throw e;
    }
    if (r.status === 404) {
      say('User #' + id + ' is gone (deleted meanwhile?).', 'error');
      reloadKeepingMessage();
      return null;
    }
    if (r.status !== 200 || !r.data || !r.etag) { say(describe(r), 'error'); return null; }
    return { user: r.data, etag: r.etag };
  }

  // Opens a user for editing as the server has it now (also the 412's "Reload user").
  async function startEdit(id) {
    var gen = ++state.editGen;
    clearErrors();
    $('save').disabled = true;
    say('Loading user #' + id + '\u2026');
    var got;
    try {
      got = await readUser(id, function () { return gen === state.editGen; });
    } finally {
      if (gen === state.editGen) $('save').disabled = false;
    }
    if (!got || gen !== state.editGen) return;
    var u = got.user;
    state.editing = u;
    state.etag = got.etag;
    FIELDS.forEach(function (f) { input(f).value = u[f] === null ? '' : u[f]; });
    $('form-title').textContent = 'Edit user #' + u.id;
    $('save').textContent = 'Save changes';
    $('cancel-edit').hidden = false;
    say('Editing user #' + u.id + ', ' + u.first_name + ' ' + u.last_name + '.');
    input('first_name').focus();
  }

  function endEdit() {
    state.editGen++;
    state.editing = null;
    state.etag = null;
    $('save').disabled = false;
    clearErrors();
    FIELDS.forEach(function (f) { input(f).value = ''; });
    $('form-title').textContent = 'New user';
    $('save').textContent = 'Create user';
    $('cancel-edit').hidden = true;
  }

  // What the form says, as the API takes it: an empty email is no email.
  function formValues() {
    var v = {};
    FIELDS.forEach(function (f) { v[f] = input(f).value; });
    if (v.email.trim() === '') v.email = null;
    return v;
  }

  async function save(ev) {
    ev.preventDefault();
    clearErrors();
    var v = formValues();
    var editing = state.editing;
    var method = 'POST', path = '/users', body = v;
    if (editing) {
      // PATCH only what changed; If-Match makes it fail (412) rather than apply to a user
      // someone else changed since the form was filled.
      body = {};
      FIELDS.forEach(function (f) { if (v[f] !== editing[f]) body[f] = v[f]; });
      if (!Object.keys(body).length) { say('Nothing changed.'); return; }
      method = 'PATCH';
      path = '/users/' + editing.id;
    } else if (v.email === null) {
      delete body.email;
    }
    $('save').disabled = true;
    var r;
    try {
      r = await call(method, path, body, undefined, editing ? state.etag : undefined);
    } catch (e) {
      if (e === STOP) return;
      throw e;
    } finally {
      $('save').disabled = false;
    }
    if (r.status === 200 || r.status === 201) {
      var u = r.data;
      endEdit();
      say((r.status === 201 ? 'Created user #' : 'Saved user #') + u.id + ', ' + u.first_name + ' ' + u.last_name + '.', 'ok');
      reloadKeepingMessage();
      return;
    }
    var msg = r.data && r.data.error ? r.data.error : describe(r);
    if (r.data && r.data.field) fieldError(r.data.field, msg);
    else if (r.status === 409) fieldError('email', msg);
    else if (r.status === 412 && editing) conflict(editing);
    else if (r.status === 404) fieldError('', describe(r) + ' (deleted meanwhile?)');
    else fieldError('', describe(r));
    say(describe(r), 'error');
    // The list may show what someone else changed or deleted: refresh it, after the
    // message is up so that the refresh keeps it.
    if (r.status === 404 || r.status === 412) reloadKeepingMessage();
  }

  // The user changed after the form was filled (412): say so, and offer to reload it.
  function conflict(u) {
    $('e-form').textContent = 'Someone else changed user #' + u.id + ' after you opened it, so ' +
      'your changes were not saved. Reload it to see what it is now, then make them again.';
    $('reload-user').hidden = false;
    $('reload-user').focus();
  }

  // Refresh the list, then put the last message back (the load overwrites it).
  async function reloadKeepingMessage() {
    var s = $('status'), text = s.textContent, cls = s.className;
    await loadList();
    if (!/error|warn/.test(s.className)) { s.textContent = text; s.className = cls; }
  }

  // Delete ----------------------------------------------------------------------------

  // Reads the user first, so that the dialog shows it as it is now and the DELETE names
  // that version: a change made after this is answered 412, and nothing is deleted.
  async function confirmDelete(id) {
    say('Loading user #' + id + '\u2026');
    var got = await readUser(id);
    if (!got) return;
    var u = got.user;
    say('Delete user #' + u.id + '?');
    var d = $('confirm');
    $('confirm-text').textContent = 'Delete user #' + u.id + ', ' + u.first_name + ' ' + u.last_name +
      (u.email ? ' <' + u.email + '>' : '') + '? This cannot be undone.';
    d.returnValue = '';
    d.onclose = function () {
      d.onclose = null;
      if (d.returnValue === 'ok') remove(u, got.etag);
    };
    d.showModal();
    $('confirm-no').focus();
  }

  async function remove(u, etag) {
    var r;
    try {
      r = await call('DELETE', '/users/' + u.id, undefined, undefined, etag);
    } catch (e) {
      if (e === STOP) return;
      throw e;
    }
    if (r.status === 412) {
      say('Someone else changed user #' + u.id + ' after you opened it, so it was not deleted. ' +
        'The list is reloaded: look again, then delete again if you still mean to.', 'error');
      reloadKeepingMessage();
      return;
    }
    if (r.status !== 204 && r.status !== 404) { say(describe(r), 'error'); return; }
    if (state.editing && state.editing.id === u.id) endEdit();
    say(r.status === 204 ? 'Deleted user #' + u.id + '.' : 'User #' + u.id + ' was already gone.', 'ok');
    if ($('rows').children.length === 1 && state.after !== null) {
      state.after = state.stack.length ? state.stack.pop() : null;
    }
    reloadKeepingMessage();
    $('users-title').focus();
  }

  // Wiring ----------------------------------------------------------------------------

  function start() {
    showKeyState();
    $('find-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var v = $('find-email').value.trim();
      if (!v) { showAll(); return; }
      state.email = v;
      state.after = null;
      state.stack = [];
      loadList();
    });
    $('find-clear').addEventListener('click', showAll);
    $('prev').addEventListener('click', prevPage);
    $('next').addEventListener('click', nextPage);
    $('user-form').addEventListener('submit', save);
    $('cancel-edit').addEventListener('click', function () { endEdit(); say('Edit cancelled.'); });
    $('reload-user').addEventListener('click', function () {
      if (state.editing) startEdit(state.editing.id);
    });
    $('key-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var v = $('key-input').value.trim();
      if (!v) { $('key-message').textContent = 'Enter the API key.'; return; }
      // The secret stays in sessionStorage only, not in the dialog for the next key.
      $('key-input').value = '';
      setKey(v);
      $('key-dialog').close();
      (state.resume || loadList)();
    });
    $('key-cancel').addEventListener('click', function () { $('key-dialog').close(); });
    $('key-set').addEventListener('click', function () {
      $('key-message').textContent = 'Enter the API key for this server.';
      $('key-input').value = '';
      $('key-dialog').showModal();
      $('key-input').focus();
    });
    $('key-forget').addEventListener('click', function () {
      setKey(null);
      readOnly(false);
      say('Key forgotten.');
    });
    loadList();
  }

  start();
}());
