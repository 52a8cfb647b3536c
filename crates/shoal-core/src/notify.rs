//! Pub/sub between instances: "sessions changed" announcements for caches, and "new events
//! on a stream" wake-ups for proxies.
//!
//! [`NotifyBus`] is all a cache and a proxy need of it:
//! - **Invalidations** ([`NotifyBus::publish`], [`NotifyBus::publish_all`]): a `Cached` store
//!   publishes after its own writes and listens to [`BusEvent`]s from other instances, plus
//!   whether the bus is connected (`Down`/`Up`), since a cache must stop serving the moment it
//!   could miss an announcement.
//! - **Wake-ups** ([`NotifyBus::publish_wakeup`], [`NotifyBus::subscribe_wakeups`]): the
//!   instance that records a stream's events announces each append; other instances wake their
//!   local followers of that stream, which then read the new events from the store. They are a
//!   latency hint only (the store stays the source of events), so they travel on a separate
//!   broadcast channel that caches never see, and a lost one only delays a follower until its
//!   next poll.
//!
//! `shoal-redis` implements the bus with Redis pub/sub for every topology; [`LocalBus`] is an
//! in-process one for tests and for several caches or proxies in one process.

use std::{
    fmt,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use tokio::sync::broadcast;

use crate::SessionId;

/// How many events a subscriber may fall behind before it is told it lagged (and then clears
/// its whole cache, since it cannot know what it missed).
pub const BUS_CAPACITY: usize = 65_536;

/// Sessions another instance changed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Invalidation {
    /// The sessions whose cached copies must go.
    pub ids: Arc<[SessionId]>,
    /// When the publisher sent it: microseconds since the Unix epoch on its wall clock, for
    /// measuring delivery delay.
    pub sent_at_us: Option<u64>,
}

impl Invalidation {
    /// An invalidation of `ids` sent at `sent_at_us` (see [`unix_micros`]).
    pub fn new(ids: impl Into<Arc<[SessionId]>>, sent_at_us: Option<u64>) -> Self {
        Invalidation {
            ids: ids.into(),
            sent_at_us,
        }
    }
}

/// The wall clock in microseconds since the Unix epoch (0 before 1970).
pub fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// What a subscriber receives, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BusEvent {
    /// These sessions changed on another instance.
    Invalidate(Invalidation),
    /// Everything may have changed (another instance asked for it).
    InvalidateAll,
    /// The bus lost its connection: announcements may be missed from now on. Caches empty
    /// themselves and stay off.
    Down,
    /// The bus is connected and subscribed again: announcements sent from now on arrive.
    /// Caches empty themselves once more (they missed what was sent while down) and turn on.
    Up,
}

/// Something that sees bus events synchronously, on the bus's own task, before they are
/// broadcast to subscribers — so a cache stops serving an entry the moment the announcement
/// arrives instead of after a task switch. Must be quick and never block.
pub trait BusHook: Send + Sync + 'static {
    /// Handles one event.
    fn on_event(&self, event: &BusEvent);
}

/// The hooks of one bus (a helper for [`NotifyBus`] implementations): hooks are called
/// in registration order; dropped ones are forgotten.
#[derive(Default)]
pub struct BusHooks {
    hooks: Mutex<Vec<Weak<dyn BusHook>>>,
}

impl fmt::Debug for BusHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.hooks.lock().map_or(0, |h| h.len());
        f.debug_struct("BusHooks").field("hooks", &n).finish()
    }
}

impl BusHooks {
    /// Registers `hook` and returns `state()`, read under the lock [`BusHooks::emit`] holds,
    /// so the hook sees every state change after the state it was given.
    pub fn add(&self, hook: Weak<dyn BusHook>, state: impl FnOnce() -> bool) -> bool {
        let mut hooks = self.hooks.lock().unwrap_or_else(|e| e.into_inner());
        hooks.retain(|h| h.strong_count() > 0);
        hooks.push(hook);
        state()
    }

    /// Runs `change` (e.g. flipping the bus's up flag) and, if it returns true, every live
    /// hook with `event`, under one lock. Returns what `change` returned.
    pub fn emit(&self, event: &BusEvent, change: impl FnOnce() -> bool) -> bool {
        let mut hooks = self.hooks.lock().unwrap_or_else(|e| e.into_inner());
        if !change() {
            return false;
        }
        hooks.retain(|h| match h.upgrade() {
            Some(h) => {
                h.on_event(event);
                true
            }
            None => false,
        });
        true
    }
}

/// A wake-up: new events were recorded on `stream` of `session` by another instance.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Wakeup {
    /// The session the stream belongs to.
    pub session: SessionId,
    /// The stream id, as the publishing proxy names it.
    pub stream: Arc<str>,
}

impl Wakeup {
    /// A wake-up for `stream` of `session`.
    pub fn new(session: SessionId, stream: impl Into<Arc<str>>) -> Self {
        Wakeup {
            session,
            stream: stream.into(),
        }
    }
}

/// How many wake-ups a subscriber may fall behind before it is told it lagged (and then wakes
/// every follower it has, since it cannot know which streams it missed).
pub const WAKEUP_CAPACITY: usize = 16_384;

/// A pub/sub channel between instances: cache invalidations and stream wake-ups.
///
/// Delivery is at least once to every other instance while both are connected; an instance
/// never receives its own messages. Implementations must report `Down` before they could have
/// missed an invalidation, and `Up` only once messages flow again. Wake-ups are best effort:
/// one may be lost (e.g. while the bus is down), so whoever waits for them also polls.
///
/// One bus per instance: two proxies or caches sharing one bus object do not hear each other.
pub trait NotifyBus: Send + Sync + fmt::Debug + 'static {
    /// Announces that `ids` changed. Never blocks; a failed send is retried by the bus.
    fn publish(&self, ids: &[SessionId]);

    /// Announces that every session may have changed (e.g. after a bulk import).
    fn publish_all(&self);

    /// A new subscription to invalidation events from other instances (and `Down`/`Up`).
    fn subscribe(&self) -> broadcast::Receiver<BusEvent>;

    /// Whether the bus is connected and subscribed right now.
    fn is_up(&self) -> bool;

    /// Registers a synchronous hook (see [`BusHook`]). Returns `Some(up)`, the bus state the
    /// hook starts from, if the bus supports hooks, `None` otherwise (the default; caches then
    /// rely on [`NotifyBus::subscribe`] alone).
    fn add_hook(&self, hook: Weak<dyn BusHook>) -> Option<bool> {
        let _ = hook;
        None
    }

    /// Announces that new events of `stream` of `session` are in the store. Never blocks;
    /// best effort. The default drops it (a bus that carries invalidations only).
    fn publish_wakeup(&self, session: &SessionId, stream: &str) {
        let _ = (session, stream);
    }

    /// A new subscription to wake-ups from other instances, or `None` if this bus carries no
    /// wake-ups (the default).
    fn subscribe_wakeups(&self) -> Option<broadcast::Receiver<Wakeup>> {
        None
    }
}

impl<B: NotifyBus + ?Sized> NotifyBus for Arc<B> {
    fn publish(&self, ids: &[SessionId]) {
        (**self).publish(ids);
    }
    fn publish_all(&self) {
        (**self).publish_all();
    }
    fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        (**self).subscribe()
    }
    fn is_up(&self) -> bool {
        (**self).is_up()
    }
    fn add_hook(&self, hook: Weak<dyn BusHook>) -> Option<bool> {
        (**self).add_hook(hook)
    }
    fn publish_wakeup(&self, session: &SessionId, stream: &str) {
        (**self).publish_wakeup(session, stream);
    }
    fn subscribe_wakeups(&self) -> Option<broadcast::Receiver<Wakeup>> {
        (**self).subscribe_wakeups()
    }
}

/// An in-process [`NotifyBus`]: every endpoint of one hub is an "instance"; what one
/// publishes (invalidations and wake-ups) reaches the subscribers of every other endpoint that
/// is up.
///
/// Each endpoint can be taken down and up ([`LocalBus::set_up`]) to exercise how caches react
/// to a lost connection. Announcements are not delivered to an endpoint while it is down.
///
/// ```
/// use shoal_core::notify::{BusEvent, LocalBus, NotifyBus};
/// use shoal_core::SessionId;
///
/// let a = LocalBus::new();
/// let b = a.endpoint();
/// let mut events = b.subscribe();
/// let mut wakeups = b.subscribe_wakeups().unwrap();
/// let s1 = SessionId::new("s1").unwrap();
/// a.publish(std::slice::from_ref(&s1));
/// match events.try_recv().unwrap() {
///     BusEvent::Invalidate(inv) => assert_eq!(inv.ids[0].as_str(), "s1"),
///     other => panic!("{other:?}"),
/// }
/// a.publish_wakeup(&s1, "p1");
/// assert_eq!(&*wakeups.try_recv().unwrap().stream, "p1");
/// ```
#[derive(Clone)]
pub struct LocalBus {
    hub: Arc<Hub>,
    me: Arc<Endpoint>,
}

struct Hub {
    endpoints: Mutex<Vec<Arc<Endpoint>>>,
    next: AtomicU64,
}

struct Endpoint {
    id: u64,
    tx: broadcast::Sender<BusEvent>,
    wakeups: broadcast::Sender<Wakeup>,
    up: AtomicBool,
    hooks: BusHooks,
}

impl Endpoint {
    fn emit(&self, event: BusEvent, change: impl FnOnce() -> bool) {
        if self.hooks.emit(&event, change) {
            let _ = self.tx.send(event);
        }
    }
}

impl fmt::Debug for LocalBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalBus")
            .field("endpoint", &self.me.id)
            .field("up", &self.is_up())
            .finish()
    }
}

impl Default for LocalBus {
    fn default() -> Self {
        LocalBus::new()
    }
}

impl LocalBus {
    /// A new hub with one endpoint (this one), up.
    pub fn new() -> Self {
        let hub = Arc::new(Hub {
            endpoints: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
        });
        let me = hub.add();
        LocalBus { hub, me }
    }

    /// Another endpoint (another "instance") on the same hub, up.
    pub fn endpoint(&self) -> LocalBus {
        LocalBus {
            hub: Arc::clone(&self.hub),
            me: self.hub.add(),
        }
    }

    /// Takes this endpoint down (subscribers get [`BusEvent::Down`] and miss what is published
    /// meanwhile) or up again ([`BusEvent::Up`]).
    pub fn set_up(&self, up: bool) {
        let event = if up { BusEvent::Up } else { BusEvent::Down };
        self.me
            .emit(event, || self.me.up.swap(up, Ordering::SeqCst) != up);
    }

    fn others(&self) -> Vec<Arc<Endpoint>> {
        self.hub
            .endpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|e| e.id != self.me.id)
            .cloned()
            .collect()
    }

    fn send_others(&self, event: &BusEvent) {
        for e in self.others() {
            if e.up.load(Ordering::SeqCst) {
                e.emit(event.clone(), || true);
            }
        }
    }

    fn wake_others(&self, wakeup: &Wakeup) {
        for e in self.others() {
            if e.up.load(Ordering::SeqCst) {
                let _ = e.wakeups.send(wakeup.clone());
            }
        }
    }
}

impl Hub {
    fn add(&self) -> Arc<Endpoint> {
        let (tx, _) = broadcast::channel(BUS_CAPACITY);
        let (wakeups, _) = broadcast::channel(WAKEUP_CAPACITY);
        let e = Arc::new(Endpoint {
            id: self.next.fetch_add(1, Ordering::SeqCst),
            tx,
            wakeups,
            up: AtomicBool::new(true),
            hooks: BusHooks::default(),
        });
        self.endpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&e));
        e
    }
}

impl NotifyBus for LocalBus {
    fn publish(&self, ids: &[SessionId]) {
        if ids.is_empty() {
            return;
        }
        self.send_others(&BusEvent::Invalidate(Invalidation::new(
            ids.to_vec(),
            Some(unix_micros()),
        )));
    }

    fn publish_all(&self) {
        self.send_others(&BusEvent::InvalidateAll);
    }

    fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.me.tx.subscribe()
    }

    fn is_up(&self) -> bool {
        self.me.up.load(Ordering::SeqCst)
    }

    fn add_hook(&self, hook: Weak<dyn BusHook>) -> Option<bool> {
        Some(
            self.me
                .hooks
                .add(hook, || self.me.up.load(Ordering::SeqCst)),
        )
    }

    fn publish_wakeup(&self, session: &SessionId, stream: &str) {
        self.wake_others(&Wakeup::new(session.clone(), stream));
    }

    fn subscribe_wakeups(&self) -> Option<broadcast::Receiver<Wakeup>> {
        Some(self.me.wakeups.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(s: &str) -> SessionId {
        SessionId::new(s).unwrap()
    }

    #[test]
    fn endpoints_do_not_hear_themselves_and_miss_messages_while_down() {
        let a = LocalBus::new();
        let b = a.endpoint();
        let mut ra = a.subscribe();
        let mut rb = b.subscribe();
        a.publish(&[sid("x")]);
        assert!(ra.try_recv().is_err(), "no echo");
        assert!(matches!(rb.try_recv(), Ok(BusEvent::Invalidate(_))));

        b.set_up(false);
        assert_eq!(rb.try_recv().unwrap(), BusEvent::Down);
        assert!(!b.is_up());
        a.publish(&[sid("y")]);
        assert!(rb.try_recv().is_err(), "missed while down");
        b.set_up(true);
        assert_eq!(rb.try_recv().unwrap(), BusEvent::Up);
        a.publish_all();
        assert_eq!(rb.try_recv().unwrap(), BusEvent::InvalidateAll);
        a.publish(&[]);
        assert!(rb.try_recv().is_err(), "nothing to announce");
    }

    #[derive(Default)]
    struct Seen(Mutex<Vec<BusEvent>>);

    impl BusHook for Seen {
        fn on_event(&self, event: &BusEvent) {
            self.0.lock().unwrap().push(event.clone());
        }
    }

    #[test]
    fn hooks_see_events_and_start_from_the_current_state() {
        let a = LocalBus::new();
        let b = a.endpoint();
        let seen = Arc::new(Seen::default());
        let weak: Weak<dyn BusHook> = Arc::downgrade(&(Arc::clone(&seen) as Arc<dyn BusHook>));
        assert_eq!(b.add_hook(weak), Some(true));
        a.publish(&[sid("h")]);
        b.set_up(false);
        assert_eq!(seen.0.lock().unwrap().len(), 2);
        assert_eq!(seen.0.lock().unwrap()[1], BusEvent::Down);
        drop(seen);
        a.publish(&[sid("gone")]);
        b.set_up(true);
    }

    #[test]
    fn wakeups_reach_other_endpoints_that_are_up_on_their_own_channel() {
        let a = LocalBus::new();
        let b = a.endpoint();
        let mut wa = a.subscribe_wakeups().unwrap();
        let mut wb = b.subscribe_wakeups().unwrap();
        let mut events = b.subscribe();
        a.publish_wakeup(&sid("w"), "p1");
        assert_eq!(wb.try_recv().unwrap(), Wakeup::new(sid("w"), "p1"));
        assert!(wa.try_recv().is_err(), "no echo");
        assert!(events.try_recv().is_err(), "caches never see wake-ups");
        b.set_up(false);
        a.publish_wakeup(&sid("w"), "p2");
        assert!(wb.try_recv().is_err(), "missed while down");
        b.set_up(true);
        b.publish_wakeup(&sid("v"), "g");
        assert_eq!(&*wa.try_recv().unwrap().stream, "g");
    }

    #[derive(Debug)]
    struct InvalidationsOnly;

    impl NotifyBus for InvalidationsOnly {
        fn publish(&self, _: &[SessionId]) {}
        fn publish_all(&self) {}
        fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
            broadcast::channel(1).1
        }
        fn is_up(&self) -> bool {
            true
        }
    }

    #[test]
    fn a_bus_without_wakeups_says_so() {
        let bus: Arc<dyn NotifyBus> = Arc::new(InvalidationsOnly);
        bus.publish_wakeup(&sid("x"), "p1");
        assert!(bus.subscribe_wakeups().is_none());
        assert_eq!(bus.add_hook(Weak::<Seen>::new()), None);
    }
}
