// Demo chat page of the gateway: plain JavaScript, no build step. It talks the client contract of
// docs/protocol.md with socket.io-client 4.x served by the node itself at /socket.io/socket.io.js.
(function () {
  'use strict';

  var $ = function (id) { return document.getElementById(id); };
  var state = { socket: null, admin: null, room: null, me: null, users: new Map() };

  function time(ts) {
    var d = ts ? new Date(ts) : new Date();
    return isNaN(d.getTime()) ? '' : d.toLocaleTimeString();
  }

  // Every line is built with textContent, so message text can never inject markup.
  function addLine(text, kind, timestamp) {
    var li = document.createElement('li');
    if (kind) li.className = kind;
    var t = document.createElement('span');
    t.className = 'time';
    t.textContent = time(timestamp);
    li.appendChild(t);
    li.appendChild(document.createTextNode(text));
    var list = $('messages');
    list.appendChild(li);
    list.scrollTop = list.scrollHeight;
  }

  function setStatus(text, online) {
    var s = $('status');
    s.textContent = text;
    s.className = 'status ' + (online ? 'online' : 'offline');
  }

  function setConnected(connected) {
    $('connect').disabled = connected;
    $('disconnect').disabled = !connected;
    $('join-room').disabled = !connected;
    $('send').disabled = !connected;
    $('pm-send').disabled = !connected;
    $('leave-room').disabled = !connected || !state.room;
  }

  function setRoom(roomId) {
    state.room = roomId;
    $('current-room').textContent = roomId || 'none';
    $('leave-room').disabled = !state.socket || !roomId;
  }

  // The payload of a JWT, for showing the admin panel; the gateway verifies the token itself.
  function claimsOf(token) {
    try {
      var part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      while (part.length % 4) part += '=';
      return JSON.parse(decodeURIComponent(escape(atob(part))));
    } catch (e) {
      return {};
    }
  }

  function fetchDevToken(username, role) {
    var url = '/dev/token?username=' + encodeURIComponent(username) + '&role=' + encodeURIComponent(role);
    return fetch(url, { credentials: 'same-origin' }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (body) {
        if (!res.ok || !body.token) {
          throw new Error(res.status === 404
            ? 'no dev token: start the gateway with --dev, or paste a token'
            : (body.error || 'cannot get a dev token (HTTP ' + res.status + ')'));
        }
        return body.token;
      });
    });
  }

  function renderUsers() {
    var list = $('online-users');
    list.textContent = '';
    var seen = new Set();
    state.users.forEach(function (u) {
      if (seen.has(u.id)) return;
      seen.add(u.id);
      var li = document.createElement('li');
      li.textContent = u.username + ' (' + u.id + ')' + (state.me && u.id === state.me.userId ? ' - you' : '');
      li.title = 'Send a private message to ' + u.username;
      li.addEventListener('click', function () {
        $('pm-to').value = u.id;
        $('pm-text').focus();
      });
      list.appendChild(li);
    });
  }

  function refreshUsers() {
    if (!state.socket) return;
    state.socket.emit('get online users', function (res) {
      if (!res || !res.success) return;
      state.users = new Map();
      res.users.forEach(function (u) { state.users.set(u.socketId, u); });
      renderUsers();
    });
  }

  function connect() {
    var pasted = $('token').value.trim();
    var username = $('username').value.trim();
    if (!pasted && !username) {
      addLine('Enter a username (or paste a token) first.', 'error');
      return;
    }
    $('connect').disabled = true;
    var tokenReady = pasted ? Promise.resolve(pasted) : fetchDevToken(username, $('role').value);
    tokenReady.then(openSockets, function (err) {
      addLine(err.message, 'error');
      $('connect').disabled = false;
    });
  }

  function openSockets(token) {
    // window.io is looked up now, not at load time, so a wrapped client library is honoured.
    var socket = window.io('/', { auth: { token: token } });
    state.socket = socket;
    var claims = claimsOf(token);

    socket.on('connect', function () {
      setStatus('connected', true);
      setConnected(true);
    });
    socket.on('connect_error', function (err) {
      addLine('Connection refused: ' + err.message, 'error');
      setStatus('refused', false);
      socket.close();
      teardown();
    });
    socket.on('disconnect', function (reason) {
      setStatus('disconnected', false);
      addLine('Disconnected (' + reason + ')', 'system');
      if (!socket.active) teardown();
    });
    socket.on('welcome', function (w) {
      state.me = w;
      addLine(w.message + ' You are ' + w.username + ' on ' + w.serverId + '.', 'system', w.timestamp);
      refreshUsers();
      if (state.room) joinRoom(state.room);
    });

    socket.on('room message', function (m) {
      addLine('[' + m.roomId + '] ' + m.username + ': ' + m.message, '', m.timestamp);
    });
    socket.on('chat message', function (m) {
      addLine((m.username || m.from) + ': ' + (m.content != null ? m.content : m.message), '', m.timestamp);
    });
    socket.on('private message', function (m) {
      addLine('[private] ' + m.from + ' -> ' + m.to + ': ' + (m.content != null ? m.content : m.message), 'private', m.timestamp);
    });
    socket.on('system message', function (m) {
      addLine('[system] ' + (m.content != null ? m.content : m.message), 'system', m.timestamp);
    });
    socket.on('system_announcement', function (m) {
      addLine('[system] ' + (m.message || m.content || ''), 'system', m.timestamp);
    });
    socket.on('room joined', function (r) {
      setRoom(r.roomId);
      addLine('Joined room ' + r.roomName + ' (' + r.userCount + ' in the room)', 'system');
    });
    socket.on('user joined', function (u) {
      addLine(u.username + ' joined ' + u.roomId + ' (' + u.userCount + ')', 'system');
    });
    socket.on('user left', function (u) {
      addLine(u.username + ' left ' + u.roomId + ' (' + u.userCount + ')', 'system');
    });
    socket.on('room error', function (e) { addLine('Room: ' + e.message, 'error'); });
    socket.on('error', function (e) { addLine('Error (' + (e && e.event) + '): ' + (e && e.message), 'error'); });
    socket.on('user online', function (u) {
      addLine(u.username + ' is online', 'system');
      refreshUsers();
    });
    socket.on('user offline', function (u) {
      addLine(u.username + ' went offline', 'system');
      refreshUsers();
    });
    socket.on('kicked', function (k) { addLine('Kicked: ' + k.reason, 'error'); });
    socket.on('banned', function (b) { addLine('Banned: ' + b.reason, 'error'); });
    socket.on('server shutdown', function (s) {
      addLine(s.message + ' (' + s.serverId + ')', 'system');
    });

    if (claims.role === 'admin') {
      state.admin = window.io('/admin', { auth: { token: token } });
      state.admin.on('connect_error', function (err) { addLine('Admin: ' + err.message, 'error'); });
      $('admin-panel').hidden = false;
    }
  }

  function teardown() {
    if (state.admin) state.admin.close();
    state.socket = null;
    state.admin = null;
    state.me = null;
    state.users = new Map();
    renderUsers();
    setRoom(null);
    setConnected(false);
    $('admin-panel').hidden = true;
  }

  function disconnect() {
    if (state.socket) state.socket.close();
    teardown();
    setStatus('disconnected', false);
  }

  function joinRoom(roomId) {
    var socket = state.socket;
    socket.emit('create room', { roomId: roomId, roomName: roomId }, function (created) {
      if (created && !created.success && created.error !== 'Room already exists') {
        addLine('Cannot create room: ' + created.error, 'error');
      }
      socket.emit('join room', { roomId: roomId }, function (joined) {
        if (!joined || !joined.success) {
          addLine('Cannot join room: ' + (joined && joined.error), 'error');
        }
      });
    });
  }

  function send() {
    var text = $('message').value.trim();
    if (!text || !state.socket) return;
    var event = state.room ? 'room message' : 'chat message';
    var payload = state.room ? { roomId: state.room, message: text } : { content: text };
    state.socket.emit(event, payload, function (res) {
      if (res && res.success) {
        addLine((state.room ? '[' + state.room + '] ' : '') + 'me: ' + text, 'own');
      } else {
        addLine('Not sent: ' + (res && res.error), 'error');
      }
    });
    $('message').value = '';
  }

  function sendPrivate() {
    var to = $('pm-to').value.trim();
    var text = $('pm-text').value.trim();
    if (!to || !text || !state.socket) return;
    state.socket.emit('private message', { to: to, content: text }, function (res) {
      if (res && res.success) {
        addLine('[private] me -> ' + to + ': ' + text, 'private own');
      } else {
        addLine('Private message not sent: ' + (res && res.error), 'error');
      }
    });
    $('pm-text').value = '';
  }

  function announce() {
    var text = $('announce-text').value.trim();
    if (!text || !state.admin) return;
    state.admin.emit('broadcast message', { message: text });
    $('announce-text').value = '';
  }

  function onEnter(id, action) {
    $(id).addEventListener('keydown', function (e) {
      if (e.key === 'Enter') action();
    });
  }

  $('connect').addEventListener('click', connect);
  $('disconnect').addEventListener('click', disconnect);
  $('join-room').addEventListener('click', function () {
    var roomId = $('room-id').value.trim();
    if (roomId && state.socket) joinRoom(roomId);
  });
  $('leave-room').addEventListener('click', function () {
    if (!state.socket || !state.room) return;
    var roomId = state.room;
    state.socket.emit('leave room', roomId, function () {
      addLine('Left room ' + roomId, 'system');
    });
    setRoom(null);
  });
  $('send').addEventListener('click', send);
  $('pm-send').addEventListener('click', sendPrivate);
  $('announce-send').addEventListener('click', announce);
  onEnter('message', send);
  onEnter('pm-text', sendPrivate);
  onEnter('username', connect);
  onEnter('announce-text', announce);
  setConnected(false);

  if (typeof window.io !== 'function') {
    addLine('socket.io-client did not load from /socket.io/socket.io.min.js: install it on the gateway with `npm ci --prefix gateway/client-bundle`', 'error');
  }
})();
