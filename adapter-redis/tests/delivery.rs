//! The delivery observer sees every local delivery of a broadcast, from this node or from
//! another one through Redis, and the sockets it moves into its excluded room are skipped.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex, OnceLock};

use adapter_redis::DeliveryObserver;
use common::{Io, client, node};
use socketioxide::socket::Sid;
use testkit::RedisServer;

const EXCLUDED: &str = "observer:excluded";

/// Records deliveries and refuses one chosen socket.
#[derive(Debug, Default)]
struct Recorder {
    io: OnceLock<Io>,
    seen: Mutex<Vec<(String, Vec<Sid>, usize)>>,
    refuse: Mutex<Option<Sid>>,
}

impl DeliveryObserver for Recorder {
    fn before_delivery(&self, ns: &str, sids: &[Sid], bytes: usize) {
        self.seen
            .lock()
            .unwrap()
            .push((ns.to_owned(), sids.to_vec(), bytes));
        let refused = *self.refuse.lock().unwrap();
        if let Some(sid) = refused.filter(|s| sids.contains(s))
            && let Some(socket) = self.io.get().and_then(|io| io.get_socket(sid))
        {
            socket.join(EXCLUDED);
        }
    }

    fn dropped(&self, _ns: &str, _dropped: usize) {}

    fn excluded_room(&self) -> &str {
        EXCLUDED
    }
}

impl Recorder {
    fn last(&self) -> (String, Vec<Sid>, usize) {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }
    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_node_and_local_deliveries_are_observed_and_refused_sockets_skipped() {
    let redis = RedisServer::start().unwrap();
    let (a, _ctr_a) = node(&redis.url()).await;
    let (b, ctr_b) = node(&redis.url()).await;
    let recorder = Arc::new(Recorder::default());
    recorder.io.set(b.clone()).unwrap();
    assert!(ctr_b.set_delivery_observer(recorder.clone()));
    assert!(
        !ctr_b.set_delivery_observer(recorder.clone()),
        "installed once"
    );

    let mut b1 = client(&b, &["r"]).await;
    let mut b2 = client(&b, &["r"]).await;
    let (sid1, sid2): (Sid, Sid) = (b1.sid.parse().unwrap(), b2.sid.parse().unwrap());
    ctr_b.sync_rooms("/").await;

    // From node a, through Redis: node b's observer is told who gets how many bytes.
    let payload = "p".repeat(10_000);
    a.to("r").emit("cross", &payload).await.unwrap();
    b1.expect("cross").await;
    b2.expect("cross").await;
    let (ns, mut sids, bytes) = recorder.last();
    sids.sort();
    let mut want = vec![sid1, sid2];
    want.sort();
    assert_eq!((ns.as_str(), sids), ("/", want));
    assert!(
        bytes >= payload.len(),
        "{bytes} bytes for a {}-byte payload",
        payload.len()
    );

    // A local broadcast on node b goes through the same observer.
    let before = recorder.count();
    b.to("r").emit("local", &1).await.unwrap();
    b1.expect("local").await;
    b2.expect("local").await;
    assert_eq!(recorder.count(), before + 1);

    // A socket the observer refuses is skipped by cross-node and local broadcasts alike.
    *recorder.refuse.lock().unwrap() = Some(sid2);
    a.to("r").emit("refused-cross", &2).await.unwrap();
    b1.expect("refused-cross").await;
    b.to("r").emit("refused-local", &3).await.unwrap();
    b1.expect("refused-local").await;
    // Once refused, a socket is no longer counted either.
    assert_eq!(recorder.last().1, vec![sid1]);
    a.to("r").emit("after", &4).await.unwrap();
    b1.expect("after").await;
    assert_eq!(recorder.last().1, vec![sid1]);
    // A direct emit bypasses the adapter: it is the first thing b2 sees after `local`.
    b.get_socket(sid2).unwrap().emit("direct", &()).unwrap();
    b2.expect("direct").await;
}
