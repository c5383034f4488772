//! The payload rules, pinned: bounds, forms, refusal texts, and no input that panics.
#![allow(clippy::unwrap_used)]
use super::*;
use serde_json::json;

fn s(n: usize) -> String {
    "x".repeat(n)
}

/// `{"gameId":"g","a":[[...[1]...]]}` with the `1` at `level` of the payload.
fn payload_with_value_at(level: usize) -> Value {
    let mut v = json!(1);
    for _ in 1..level {
        v = json!([v]);
    }
    json!({ "gameId": "g", "a": v })
}

#[test]
fn payloads_the_cluster_can_carry_pass_and_deeper_ones_are_refused() {
    let deepest = payload_with_value_at(MAX_PAYLOAD_DEPTH);
    assert!(payload_fits_cluster(&deepest).is_ok());
    // Wrapped as `game update` wraps it, it is still event data the adapter publishes.
    let update = json!(["game update", { "gameId": "g", "action": deepest, "seq": 1 }]);
    assert!(adapter_redis::json::from_event_json(&update.to_string(), &[]).is_ok());

    let too_deep = payload_with_value_at(MAX_PAYLOAD_DEPTH + 1);
    let err = payload_fits_cluster(&too_deep).unwrap_err();
    assert!(err.0.contains("nested too deeply"), "{err}");
    assert!(payload_fits_cluster(&json!([])).is_ok());
    assert!(payload_fits_cluster(&json!(null)).is_ok());
    let fake = json!({ "gameId": "g", "x": [{ "_placeholder": true, "num": 0 }] });
    let err = payload_fits_cluster(&fake).unwrap_err();
    assert!(err.0.contains("placeholder"), "{err}");
    assert!(payload_fits_cluster(&json!({ "_placeholder": true, "num": 0, "x": 1 })).is_ok());
}

#[test]
fn chat_message_bounds_and_forms() {
    assert!(chat_message(&json!({ "content": s(1) })).is_ok());
    assert!(chat_message(&json!({ "content": s(1000) })).is_ok());
    assert!(chat_message(&json!({ "content": "" })).is_err());
    assert!(chat_message(&json!({ "content": s(1001) })).is_err());
    assert!(chat_message(&json!({ "content": 5 })).is_err());
    assert!(chat_message(&json!({})).is_err());
    assert!(chat_message(&json!(null)).is_err());
    assert!(chat_message(&json!([1])).is_err());
    // Multi-byte characters count once.
    assert!(chat_message(&json!({ "content": "é".repeat(1000) })).is_ok());
    let early = chat_message(&json!("hi")).unwrap();
    assert!(early.early_form);
    assert_eq!(early.content, "hi");
    assert!(chat_message(&json!("")).is_err());
    assert!(chat_message(&json!(s(1001))).is_err());
    let m = chat_message(&json!({ "content": "a", "roomId": "r", "type": "image", "extra": 1 }))
        .unwrap();
    assert_eq!(
        (m.room_id.as_deref(), m.kind),
        (Some("r"), MessageKind::Image)
    );
    assert_eq!(
        chat_message(&json!({ "content": "a" })).unwrap().kind,
        MessageKind::Text
    );
    assert!(chat_message(&json!({ "content": "a", "type": "video" })).is_err());
    assert!(chat_message(&json!({ "content": "a", "type": 1 })).is_err());
    assert!(chat_message(&json!({ "content": "a", "roomId": 1 })).is_err());
    assert!(chat_message(&json!({ "content": "a", "roomId": s(51) })).is_err());
    assert!(chat_message(&json!({ "content": "a", "roomId": s(50) })).is_ok());
}

#[test]
fn private_message_forms() {
    assert_eq!(
        private_message(&json!({ "to": "u2", "content": "hi" })).unwrap(),
        PrivateMessage::ToUser {
            to: "u2".into(),
            content: "hi".into()
        }
    );
    assert_eq!(
        private_message(&json!({ "targetSocketId": "abc", "message": "hi" })).unwrap(),
        PrivateMessage::ToSocket {
            target_socket_id: "abc".into(),
            content: "hi".into()
        }
    );
    assert!(private_message(&json!({ "to": "u2", "content": s(1000) })).is_ok());
    assert!(private_message(&json!({ "to": "u2", "content": s(1001) })).is_err());
    assert!(private_message(&json!({ "to": "u2", "content": "" })).is_err());
    assert!(private_message(&json!({ "to": "", "content": "x" })).is_err());
    assert!(private_message(&json!({ "to": 3, "content": "x" })).is_err());
    assert!(private_message(&json!({ "content": "x" })).is_err());
    assert!(private_message(&json!({ "targetSocketId": "a", "message": s(1001) })).is_err());
    assert!(private_message(&json!("hi")).is_err());
}

#[test]
fn username_bounds() {
    assert_eq!(username(&json!("a")).unwrap(), "a");
    assert!(username(&json!(s(32))).is_ok());
    assert!(username(&json!(s(33))).is_err());
    assert!(username(&json!("")).is_err());
    assert!(username(&json!("   ")).is_err());
    assert!(username(&json!(7)).is_err());
    assert!(username(&json!(null)).is_err());
    assert!(username(&json!({ "username": "bob" })).is_err());
}

#[test]
fn create_room_rules() {
    let ok = create_room(&json!({ "roomId": "r", "roomName": "R" })).unwrap();
    assert_eq!(
        (ok.is_private, ok.max_users, ok.password),
        (false, 100, None)
    );
    assert!(create_room(&json!({ "roomId": s(50), "roomName": s(100) })).is_ok());
    assert!(create_room(&json!({ "roomId": s(51), "roomName": "R" })).is_err());
    assert!(create_room(&json!({ "roomId": "", "roomName": "R" })).is_err());
    assert!(create_room(&json!({ "roomId": "r", "roomName": s(101) })).is_err());
    assert!(create_room(&json!({ "roomId": "r", "roomName": "" })).is_err());
    assert!(create_room(&json!({ "roomId": "r" })).is_err());
    assert!(create_room(&json!({ "roomId": "r", "roomName": "R", "isPrivate": "yes" })).is_err());
    assert!(create_room(&json!({ "roomId": "r", "roomName": "R", "isPrivate": true })).is_err());
    let p = create_room(
        &json!({ "roomId": "r", "roomName": "R", "isPrivate": true, "password": "pw" }),
    )
    .unwrap();
    assert_eq!((p.is_private, p.password.as_deref()), (true, Some("pw")));
    for (n, ok) in [(0, false), (1, true), (1000, true), (1001, false)] {
        assert_eq!(
            create_room(&json!({ "roomId": "r", "roomName": "R", "maxUsers": n })).is_ok(),
            ok,
            "maxUsers {n}"
        );
    }
    assert!(create_room(&json!({ "roomId": "r", "roomName": "R", "maxUsers": 1.5 })).is_err());
    assert!(create_room(&json!({ "roomId": "r", "roomName": "R", "maxUsers": "5" })).is_err());
    assert!(create_room(&json!({ "roomId": "r", "roomName": "R", "maxUsers": -1 })).is_err());
    assert_eq!(
        create_room(&json!({ "roomId": "r", "roomName": "R", "maxUsers": 5.0 }))
            .unwrap()
            .max_users,
        5
    );
}

#[test]
fn join_leave_history_rules() {
    assert_eq!(join_room(&json!({ "roomId": "r" })).unwrap().password, None);
    assert_eq!(join_room(&json!("r")).unwrap().room_id, "r");
    assert!(join_room(&json!({ "roomId": s(51) })).is_err());
    assert!(join_room(&json!({ "roomId": "r", "password": 1 })).is_err());
    assert_eq!(room_id(&json!("r")).unwrap(), "r");
    assert_eq!(room_id(&json!({ "roomId": "r" })).unwrap(), "r");
    assert!(room_id(&json!(s(51))).is_err());
    assert!(room_id(&json!(null)).is_err());
    assert!(room_id(&json!(1)).is_err());
    assert_eq!(room_history(&json!({ "roomId": "r" })).unwrap().limit, 50);
    for (n, ok) in [(0, false), (1, true), (100, true), (101, false)] {
        assert_eq!(
            room_history(&json!({ "roomId": "r", "limit": n })).is_ok(),
            ok
        );
    }
    assert!(room_message(&json!({ "roomId": "r", "message": s(1000) })).is_ok());
    assert!(room_message(&json!({ "roomId": "r", "message": s(1001) })).is_err());
    assert!(room_message(&json!({ "roomId": "r", "message": "" })).is_err());
    assert!(room_message(&json!({ "roomId": "r" })).is_err());
}

#[test]
fn game_and_admin_rules() {
    assert_eq!(game_id(&json!("g")).unwrap(), "g");
    assert!(game_id(&json!(s(50))).is_ok());
    assert!(game_id(&json!(s(51))).is_err());
    assert!(game_id(&json!("")).is_err());
    assert_eq!(
        game_action(&json!({ "gameId": "g", "move": 1 })).unwrap(),
        "g"
    );
    assert!(game_action(&json!({ "move": 1 })).is_err());
    assert!(game_action(&json!("g")).is_err());
    assert_eq!(broadcast_message(&json!({ "message": "m" })).unwrap(), "m");
    assert!(broadcast_message(&json!({ "message": "" })).is_err());
    assert_eq!(kick_target(&json!("sid")).unwrap(), "sid");
    assert_eq!(user_id(&json!({ "userId": "u" })).unwrap(), "u");
    let b = ban_user(&json!({ "userId": "u", "reason": "r", "durationSecs": 60 })).unwrap();
    assert_eq!(
        (b.reason.as_deref(), b.duration_secs),
        (Some("r"), Some(60))
    );
    assert!(ban_user(&json!({ "userId": "u", "durationSecs": 0 })).is_err());
    assert!(ban_user(&json!({ "userId": "u", "durationSecs": "1" })).is_err());
    assert!(ban_user(&json!({ "reason": "r" })).is_err());
    assert_eq!(ban_user(&json!("u")).unwrap().user_id, "u");
}

#[test]
fn errors_are_readable() {
    assert_eq!(
        chat_message(&json!({ "content": 5 })).unwrap_err().0,
        "\"content\" must be a string, got a number"
    );
    assert_eq!(
        chat_message(&json!({ "content": s(1001) })).unwrap_err().0,
        "\"content\" must be 1 to 1000 characters long"
    );
}

fn arbitrary_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::hash_map(
                prop_oneof![
                    Just("content".to_owned()),
                    Just("roomId".to_owned()),
                    Just("to".to_owned()),
                    Just("maxUsers".to_owned()),
                    Just("limit".to_owned()),
                    Just("durationSecs".to_owned()),
                    Just("type".to_owned()),
                    ".{0,8}".prop_map(|s: String| s),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest::proptest! {
    #[test]
    fn no_input_panics(v in arbitrary_json()) {
        let _ = chat_message(&v);
        let _ = private_message(&v);
        let _ = username(&v);
        let _ = create_room(&v);
        let _ = join_room(&v);
        let _ = room_id(&v);
        let _ = room_message(&v);
        let _ = room_history(&v);
        let _ = game_id(&v);
        let _ = game_action(&v);
        let _ = chat_private_message(&v);
        let _ = broadcast_message(&v);
        let _ = kick_target(&v);
        let _ = user_id(&v);
        let _ = ban_user(&v);
    }
}
