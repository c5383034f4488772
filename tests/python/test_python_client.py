"""python-socketio's asyncio client as a second, independent client of the gateway (docs/protocol.md, section "Namespaces and events")."""

import asyncio
import uuid

import pytest
import socketio


async def connect_user(gateway, user_id, username, transports):
    """Connects with auth.token; returns (client, welcome future) with handlers set before connecting."""
    sio = socketio.AsyncClient(reconnection=False)
    loop = asyncio.get_running_loop()
    welcome = loop.create_future()
    inbox: asyncio.Queue = asyncio.Queue()

    @sio.on("welcome")
    async def on_welcome(data):
        if not welcome.done():
            welcome.set_result(data)

    @sio.on("chat message")
    async def on_chat(data):
        await inbox.put(data)

    sio.inbox = inbox
    await sio.connect(
        gateway.url,
        auth={"token": gateway.token(user_id, username)},
        transports=transports,
        wait_timeout=10,
    )
    return sio, welcome


@pytest.mark.parametrize("transports", [["websocket"], ["polling"], ["polling", "websocket"]])
async def test_auth_welcome_chat_round_trip_and_ack(gateway, transports):
    uid_a, uid_b = f"py-a-{uuid.uuid4().hex[:8]}", f"py-b-{uuid.uuid4().hex[:8]}"
    a, welcome_a = await connect_user(gateway, uid_a, "pyalice", transports)
    b, welcome_b = await connect_user(gateway, uid_b, "pybob", transports)
    try:
        wa = await asyncio.wait_for(welcome_a, 10)
        wb = await asyncio.wait_for(welcome_b, 10)
        assert wa["userId"] == uid_a and wa["username"] == "pyalice"
        assert wa["socketId"] == a.get_sid("/")
        assert wa["serverId"] == "python-e2e"
        assert wb["userId"] == uid_b

        ack = await a.call("chat message", {"content": "hello from python <b>spam</b>"}, timeout=5)
        assert ack["success"] is True
        assert isinstance(ack["messageId"], str)
        msg = await asyncio.wait_for(b.inbox.get(), 5)
        assert msg["id"] == ack["messageId"]
        assert msg["from"] == uid_a
        assert msg["username"] == "pyalice"
        assert msg["content"] == "hello from python ***"
        assert msg["type"] == "text"

        room_id = f"py-room-{uuid.uuid4().hex[:8]}"
        created = await a.call("create room", {"roomId": room_id, "roomName": "Python room"}, timeout=5)
        assert created == {"success": True, "roomId": room_id}
        rejected = await b.call("create room", {"roomId": room_id, "roomName": "Again"}, timeout=5)
        assert rejected == {"success": False, "error": "Room already exists"}

        reply = await b.call("chat message", {"content": "hi back"}, timeout=5)
        assert reply["success"] is True
        back = await asyncio.wait_for(a.inbox.get(), 5)
        assert back["content"] == "hi back" and back["from"] == uid_b
        # The sender is excluded: b's own message never reached b (the ack above came after it would have).
        assert b.inbox.empty()
    finally:
        await a.disconnect()
        await b.disconnect()


async def test_missing_token_is_refused_with_the_contract_message(gateway):
    sio = socketio.AsyncClient(reconnection=False)
    errors = []

    @sio.event
    async def connect_error(data):
        errors.append(data)

    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(gateway.url, transports=["websocket"], wait_timeout=10)
    assert errors, "no connect_error was delivered"
    message = errors[0].get("message") if isinstance(errors[0], dict) else errors[0]
    assert message == "Authentication error: No token provided"
