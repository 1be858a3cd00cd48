//! The bus on Redis pub/sub: two channels per room (updates, awareness), one connection that
//! publishes and one that listens, each reconnecting with backoff when Redis goes away.
//!
//! ```text
//!   publish(room, body) ── counter, prev ──> written to the socket at once (try_write) ───┐
//!       (never waits: what the socket does not take waits in a bounded buffer for    PUBLISH │
//!        the publisher task, which also reads the replies; a Redis that is down drops      │
//!        and counts)                                                                       │
//!                                                                                          Redis
//!   events <── [bounded] <── listener task: decode, drop own, judge counters <── SUBSCRIBE ─┘
//!       Message / Disconnected / Reconnected / Lagged       (PING every `ping_every`)
//! ```
//!
//! What the listener hears goes to a bounded queue ([`RedisBus::start`]) or straight to a
//! function called on its own task ([`RedisBus::start_with`]: a node saves the hop through a
//! queue and a task on every message, which is most of what a cross-node edit costs beside
//! Redis itself; the function must not block, and refuses what it cannot take now).
//!
//! Redis pub/sub delivers at most once and keeps nothing: a message published while this node
//! was not listening is gone. So the listener reports every break (`Disconnected`, then
//! `Reconnected` once it listens again to every room it heard) and the counters of every
//! origin are judged ([`Gaps`]); the cluster reads the log for whatever that says it missed.
//! A node that cannot keep up drops messages rather than buffer them without bound, and says
//! which rooms (`Lagged`).

use crate::cluster::bus::{Bus, BusError, BusEvent, BusMetrics};
use crate::cluster::gaps::{Gaps, Seen};
use crate::cluster::resp::{Address, Conn, Reader, RespError, Value};
use crate::store::BoxFuture;
use duet_protocol::RoomName;
use duet_protocol::bus::{Body, Channel, Envelope, NodeId};
use duet_protocol::codec::{decode_bus, encode_bus};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Tunables of the Redis bus.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Put before every channel name, so several clusters can share one Redis.
    pub prefix: String,
    /// How long opening a connection may take.
    pub connect_timeout: Duration,
    /// How long Redis may take to answer a command (PUBLISH, SUBSCRIBE, PING).
    pub response_timeout: Duration,
    /// How often the listening connection is checked with a PING: a Redis that vanished
    /// without closing the connection is noticed within this plus `response_timeout`.
    pub ping_every: Duration,
    /// The first wait before reconnecting; it doubles per failed attempt up to `backoff_max`
    /// (each wait drawn between half and all of it, so nodes do not reconnect in step).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Bytes of messages waiting to be written to Redis (the socket did not take them at
    /// once); past it, new ones are dropped (and their receivers see the gap).
    pub publish_buffer: usize,
    /// Events waiting for the node; past it, messages are dropped and their rooms reported
    /// as lagged.
    pub events_queue: usize,
    /// Largest message accepted from the bus, in bytes.
    pub max_message_bytes: usize,
    /// Debug builds only: drop every Nth message this node publishes (after numbering it, so
    /// receivers see the gap), to test anti-entropy. Set from `DUET_FAILPOINT_BUS_DROP_EVERY`.
    #[cfg(debug_assertions)]
    pub drop_every: Option<u64>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "duet:".into(),
            connect_timeout: Duration::from_secs(3),
            response_timeout: Duration::from_secs(3),
            ping_every: Duration::from_secs(2),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            publish_buffer: 8 * 1024 * 1024,
            events_queue: 16 * 1024,
            max_message_bytes: duet_protocol::DEFAULT_MAX_MESSAGE_BYTES + 4096,
            #[cfg(debug_assertions)]
            drop_every: failpoint::from_env(),
        }
    }
}

/// The bus on Redis pub/sub. Dropping it stops its tasks.
pub struct RedisBus {
    origin: NodeId,
    epoch: u64,
    prefix: String,
    numbering: Mutex<Numbering>,
    outgoing: Arc<Outgoing>,
    control: mpsc::UnboundedSender<Control>,
    /// Whether the listener and the publisher are connected.
    listening: watch::Receiver<bool>,
    publishing: watch::Receiver<bool>,
    metrics: Arc<BusMetrics>,
    response_timeout: Duration,
    #[cfg(debug_assertions)]
    drop_every: Option<u64>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

/// What is published goes straight to the publishing connection's socket from the publishing
/// task (a room's): no queue and no task between a room and Redis while the socket takes it.
/// The publisher task reads the replies and writes whatever a full socket left behind.
struct Outgoing {
    // A std Mutex: held to append to a buffer and make one non-blocking write, never across
    // an `.await`.
    state: Mutex<OutState>,
    /// Wakes the publisher task when something is left in the buffer.
    wake: tokio::sync::Notify,
    limit: usize,
}

#[derive(Default)]
struct OutState {
    /// The publishing connection's writing half, while it is up.
    writer: Option<Arc<OwnedWriteHalf>>,
    /// Encoded commands the socket has not taken yet.
    buf: Vec<u8>,
    /// Messages (wholly or partly) in `buf`, counted as dropped if the connection breaks.
    in_buf: u64,
    /// Commands written whose replies have not come back.
    awaiting: u64,
}

impl Outgoing {
    fn state(&self) -> std::sync::MutexGuard<'_, OutState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes what the buffer holds as far as the socket takes it now. `Err` when the
    /// connection is broken.
    fn write_now(state: &mut OutState) -> std::io::Result<()> {
        let Some(writer) = state.writer.clone() else {
            return Ok(());
        };
        while !state.buf.is_empty() {
            match writer.try_write(&state.buf) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    state.buf.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        state.in_buf = 0;
        Ok(())
    }
}

/// This node's counters: one per epoch across all rooms, and the last one per channel.
#[derive(Default)]
struct Numbering {
    counter: u64,
    last: HashMap<(Channel, RoomName), u64>,
}

/// Where the listener hands what it hears.
pub enum Deliver {
    /// A bounded queue the node reads.
    Queue(mpsc::Sender<BusEvent>),
    /// A function called on the listener's task. It must not block; `Err(event)` refuses an
    /// event it cannot take now, as a full queue would (a refused message is counted as
    /// lagged and its room reported in a later `Lagged`).
    Call(Box<dyn FnMut(BusEvent) -> Result<(), Box<BusEvent>> + Send + Sync>),
}

impl Deliver {
    fn offer(&mut self, event: BusEvent) -> Result<(), Box<BusEvent>> {
        match self {
            Deliver::Queue(tx) => tx.try_send(event).map_err(|e| match e {
                mpsc::error::TrySendError::Full(event)
                | mpsc::error::TrySendError::Closed(event) => Box::new(event),
            }),
            Deliver::Call(call) => call(event),
        }
    }
}

/// Who waits for a subscription's confirmation, if anyone.
type Waiter = Option<oneshot::Sender<Result<(), BusError>>>;

enum Control {
    Subscribe {
        room: RoomName,
        done: oneshot::Sender<Result<(), BusError>>,
    },
    Unsubscribe {
        room: RoomName,
    },
}

impl RedisBus {
    /// Starts a bus for node `origin` in its `epoch` on the Redis at `url`
    /// (`redis://[:password@]host:port[/db]`), and the stream of what it hears. Returns at
    /// once: the connections are made in the background, and made again whenever they
    /// break ([`RedisBus::wait_connected`] waits for them). Must run inside a tokio runtime.
    pub fn start(
        url: &str,
        origin: NodeId,
        epoch: u64,
        options: RedisOptions,
    ) -> Result<(Self, mpsc::Receiver<BusEvent>), BusError> {
        let (events_tx, events_rx) = mpsc::channel(options.events_queue.max(1));
        let bus = Self::start_with(url, origin, epoch, options, Deliver::Queue(events_tx))?;
        Ok((bus, events_rx))
    }

    /// Like [`RedisBus::start`], handing what it hears to `deliver`.
    pub fn start_with(
        url: &str,
        origin: NodeId,
        epoch: u64,
        options: RedisOptions,
        deliver: Deliver,
    ) -> Result<Self, BusError> {
        // The address is not repeated in the error: it may hold a password.
        let address = Address::parse(url).map_err(|e| BusError::BadAddress(e.to_string()))?;
        let metrics = Arc::new(BusMetrics::default());
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let outgoing = Arc::new(Outgoing {
            state: Mutex::new(OutState::default()),
            wake: tokio::sync::Notify::new(),
            limit: options.publish_buffer.max(64 * 1024),
        });
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (listening_tx, listening) = watch::channel(false);
        let (publishing_tx, publishing) = watch::channel(false);
        let backoff = Backoff::new(&options, epoch);
        tasks.spawn(
            Publisher {
                address: address.clone(),
                options: options.clone(),
                metrics: metrics.clone(),
                connected: publishing_tx,
                backoff: backoff.clone(),
            }
            .run(outgoing.clone(), cancel.clone()),
        );
        tasks.spawn(
            Listener {
                address,
                options: options.clone(),
                origin: origin.clone(),
                epoch,
                metrics: metrics.clone(),
                connected: listening_tx,
                events: deliver,
                rooms: HashSet::new(),
                gaps: Gaps::default(),
                lagged: HashSet::new(),
                backoff,
                confirming: VecDeque::new(),
                pinged: None,
            }
            .run(control_rx, cancel.clone()),
        );
        tasks.close();
        Ok(Self {
            origin,
            epoch,
            prefix: options.prefix.clone(),
            numbering: Mutex::new(Numbering::default()),
            outgoing,
            control: control_tx,
            listening,
            publishing,
            metrics,
            response_timeout: options.response_timeout,
            #[cfg(debug_assertions)]
            drop_every: options.drop_every,
            cancel,
            tasks,
        })
    }

    /// Waits until both connections are up, or fails after `limit`.
    pub async fn wait_connected(&self, limit: Duration) -> Result<(), BusError> {
        let mut listening = self.listening.clone();
        let mut publishing = self.publishing.clone();
        tokio::time::timeout(limit, async {
            let _ = listening.wait_for(|up| *up).await;
            let _ = publishing.wait_for(|up| *up).await;
        })
        .await
        .map_err(|_| BusError::Unavailable(format!("redis not reached within {limit:?}")))
    }

    /// Stops the bus's tasks and waits for them.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tasks.wait().await;
    }

    /// This node's id and epoch, as its messages carry them.
    pub fn origin(&self) -> (&NodeId, u64) {
        (&self.origin, self.epoch)
    }

    /// The numbering, taken over if a panic poisoned it (every change is one whole update).
    fn numbering(&self) -> std::sync::MutexGuard<'_, Numbering> {
        self.numbering.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Bus for RedisBus {
    fn publish(&self, room: &RoomName, body: Body) {
        let channel = body.channel();
        // A std Mutex: held to bump two numbers, never across an `.await`.
        let (counter, prev) = {
            let mut numbering = self.numbering();
            numbering.counter += 1;
            let counter = numbering.counter;
            let prev = numbering
                .last
                .insert((channel, room.clone()), counter)
                .unwrap_or(0);
            (counter, prev)
        };
        #[cfg(debug_assertions)]
        if self.drop_every.is_some_and(|n| n > 0 && counter % n == 0) {
            self.metrics.failpoint_dropped.inc();
            return;
        }
        let bytes = encode_bus(&Envelope {
            origin: self.origin.clone(),
            epoch: self.epoch,
            counter,
            prev,
            body,
        });
        let mut command = Vec::with_capacity(bytes.len() + 128);
        crate::cluster::resp::encode(
            &mut command,
            &[
                b"PUBLISH",
                channel.name(&self.prefix, room).as_bytes(),
                &bytes,
            ],
        );
        let left = {
            let mut out = self.outgoing.state();
            if out.writer.is_none() || out.buf.len() + command.len() > self.outgoing.limit {
                drop(out);
                self.metrics.publish_dropped.inc();
                return;
            }
            let was_empty = out.buf.is_empty();
            out.buf.extend_from_slice(&command);
            out.in_buf += 1;
            out.awaiting += 1;
            // Behind what the socket already refused, it waits its turn with the publisher
            // task; otherwise the socket takes it now. A broken socket is the publisher's to
            // find (its read fails) and reconnect.
            if was_empty {
                let _ = Outgoing::write_now(&mut out);
            }
            !out.buf.is_empty()
        };
        self.metrics.published.inc();
        if left {
            self.outgoing.wake.notify_one();
        }
    }

    fn subscribe(&self, room: &RoomName) -> BoxFuture<'_, Result<(), BusError>> {
        let (done, wait) = oneshot::channel();
        let sent = self.control.send(Control::Subscribe {
            room: room.clone(),
            done,
        });
        // Twice the response timeout: the listener may be finishing another command first.
        let limit = self.response_timeout * 2;
        Box::pin(async move {
            if sent.is_err() {
                return Err(BusError::Unavailable("the bus has stopped".into()));
            }
            match tokio::time::timeout(limit, wait).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(BusError::Unavailable("the bus has stopped".into())),
                Err(_) => Err(BusError::Unavailable(format!(
                    "redis did not confirm the subscription within {limit:?}"
                ))),
            }
        })
    }

    fn unsubscribe(&self, room: &RoomName) {
        // The next message here begins the channel anew (`prev` 0): receivers judge it as
        // following whatever they heard, not as a gap.
        {
            let mut numbering = self.numbering();
            numbering.last.remove(&(Channel::Updates, room.clone()));
            numbering.last.remove(&(Channel::Awareness, room.clone()));
        }
        let _ = self
            .control
            .send(Control::Unsubscribe { room: room.clone() });
    }

    fn connected(&self) -> bool {
        *self.listening.borrow() && *self.publishing.borrow()
    }

    fn metrics(&self) -> Option<Arc<BusMetrics>> {
        Some(self.metrics.clone())
    }
}

/// Waits between reconnection attempts: doubling from `min` to `max`, each wait drawn between
/// half and all of it.
#[derive(Clone)]
struct Backoff {
    min: Duration,
    max: Duration,
    /// xorshift state: no cryptography needed, only nodes not reconnecting in step.
    seed: u64,
}

impl Backoff {
    fn new(options: &RedisOptions, epoch: u64) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Self {
            min: options.backoff_min,
            max: options.backoff_max.max(options.backoff_min),
            seed: (u64::from(nanos) ^ epoch.rotate_left(32)) | 1,
        }
    }

    fn delay(&mut self, failures: u32) -> Duration {
        let full = self.min.saturating_mul(1 << failures.min(16)).min(self.max);
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let share = 0.5 + (self.seed % 1024) as f64 / 2048.0;
        full.mul_f64(share)
    }
}

/// The task that keeps the publishing connection: connects (again), reads the replies, writes
/// what the socket did not take when it was published, and finds a Redis that stopped
/// answering.
struct Publisher {
    address: Address,
    options: RedisOptions,
    metrics: Arc<BusMetrics>,
    connected: watch::Sender<bool>,
    backoff: Backoff,
}

impl Publisher {
    async fn run(mut self, outgoing: Arc<Outgoing>, cancel: CancellationToken) {
        let mut failures = 0;
        loop {
            let connected = tokio::select! {
                _ = cancel.cancelled() => return,
                c = Conn::open(&self.address, self.options.connect_timeout, self.options.max_message_bytes) => c,
            };
            let conn = match connected {
                Ok(conn) => conn,
                Err(e) => {
                    failures += 1;
                    tracing::debug!(error = %e, failures, "cannot reach redis to publish");
                    let wait = self.backoff.delay(failures);
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(wait) => continue,
                    }
                }
            };
            if failures > 0 {
                tracing::info!(failures, "publishing to redis again");
            }
            failures = 0;
            let (reader, writer) = conn.into_parts();
            let writer = Arc::new(writer);
            {
                let mut out = outgoing.state();
                out.writer = Some(writer.clone());
                out.buf.clear();
                out.in_buf = 0;
                out.awaiting = 0;
            }
            self.connected.send_replace(true);
            let ended = self.serve(reader, &writer, &outgoing, &cancel).await;
            let lost = {
                let mut out = outgoing.state();
                out.writer = None;
                out.buf.clear();
                out.awaiting = 0;
                std::mem::take(&mut out.in_buf)
            };
            // Whether Redis took them is unknown: their receivers see gaps where it did not.
            self.metrics.publish_dropped.inc_by(lost);
            self.connected.send_replace(false);
            match ended {
                None => return,
                Some(e) => {
                    tracing::warn!(error = %e, "lost the redis connection that publishes; reconnecting");
                }
            }
        }
    }

    /// Until the connection breaks (`Some(why)`) or the bus stops (`None`).
    async fn serve(
        &self,
        mut reader: Reader,
        writer: &OwnedWriteHalf,
        outgoing: &Outgoing,
        cancel: &CancellationToken,
    ) -> Option<RespError> {
        let limit = self.options.response_timeout;
        let mut check = tokio::time::interval(limit / 2);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut progress = Instant::now();
        loop {
            loop {
                match reader.buffered() {
                    Ok(Some(Value::Int(_))) => {}
                    Ok(Some(Value::Error(e))) => {
                        self.metrics.publish_dropped.inc();
                        tracing::debug!(error = %e, "redis refused a publish");
                    }
                    Ok(Some(other)) => {
                        return Some(RespError::Protocol(format!(
                            "unexpected reply to PUBLISH: {other:?}"
                        )));
                    }
                    Ok(None) => break,
                    Err(e) => return Some(e),
                }
                progress = Instant::now();
                let mut out = outgoing.state();
                out.awaiting = out.awaiting.saturating_sub(1);
            }
            tokio::select! {
                _ = cancel.cancelled() => return None,
                read = reader.fill() => {
                    if let Err(e) = read {
                        return Some(e);
                    }
                }
                () = outgoing.wake.notified() => {
                    // What the socket did not take at once, as it makes room.
                    let flushed = tokio::time::timeout(limit, async {
                        loop {
                            writer.writable().await?;
                            let mut out = outgoing.state();
                            Outgoing::write_now(&mut out)?;
                            if out.buf.is_empty() {
                                return Ok::<_, std::io::Error>(());
                            }
                        }
                    })
                    .await;
                    match flushed {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Some(e.into()),
                        Err(_) => return Some(RespError::Timeout(limit)),
                    }
                }
                _ = check.tick() => {
                    // A Redis gone without closing the connection stops answering.
                    if outgoing.state().awaiting == 0 {
                        progress = Instant::now();
                    } else if progress.elapsed() > limit {
                        return Some(RespError::Timeout(limit));
                    }
                }
            }
        }
    }
}

/// The task that listens: one pub/sub connection subscribed to every room the node holds.
struct Listener {
    address: Address,
    options: RedisOptions,
    origin: NodeId,
    epoch: u64,
    metrics: Arc<BusMetrics>,
    connected: watch::Sender<bool>,
    events: Deliver,
    /// The rooms the node asked to hear, whether or not the connection is up.
    rooms: HashSet<RoomName>,
    gaps: Gaps<(Channel, RoomName)>,
    /// Rooms whose messages were dropped because the node fell behind, not yet reported.
    lagged: HashSet<RoomName>,
    backoff: Backoff,
    /// Subscriptions sent and not yet confirmed: channels still to confirm, and who waits.
    confirming: VecDeque<(usize, Waiter)>,
    /// When the PING still unanswered was sent.
    pinged: Option<Instant>,
}

/// How often rooms whose messages were dropped are reported while the node is behind.
const LAG_REPORT_EVERY: Duration = Duration::from_millis(100);

/// Channels per SUBSCRIBE command when subscribing again after a reconnect.
const SUBSCRIBE_CHUNK: usize = 512;

/// Why the listener's connection ended.
enum Ended {
    Cancelled,
    Broken(String),
}

impl Listener {
    async fn run(
        mut self,
        mut control: mpsc::UnboundedReceiver<Control>,
        cancel: CancellationToken,
    ) {
        let mut failures = 0u32;
        // `Some` while the node is cut off from the bus (not before the first connection).
        let mut down_since: Option<Instant> = None;
        loop {
            let connected = tokio::select! {
                _ = cancel.cancelled() => return,
                c = self.connect() => c,
            };
            let conn = match connected {
                Ok(conn) => conn,
                Err(e) => {
                    failures += 1;
                    tracing::debug!(error = %e, failures, "cannot reach redis to listen");
                    let wait = self.backoff.delay(failures);
                    // Requests made while down are answered at once: the room works from the
                    // log and catches up on `Reconnected`.
                    let sleep = tokio::time::sleep(wait);
                    tokio::pin!(sleep);
                    loop {
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = &mut sleep => break,
                            Some(c) = control.recv() => self.control_while_down(c),
                        }
                    }
                    continue;
                }
            };
            failures = 0;
            self.connected.send_replace(true);
            if let Some(since) = down_since.take() {
                self.metrics.reconnects.inc();
                let after = since.elapsed();
                tracing::info!(?after, rooms = self.rooms.len(), "listening to redis again");
                self.emit(BusEvent::Reconnected { after });
            }
            let ended = self.listen(conn, &mut control, &cancel).await;
            self.connected.send_replace(false);
            // Subscriptions that were waiting are answered: the room works from the log.
            for (_, done) in self.confirming.drain(..) {
                if let Some(done) = done {
                    let _ = done.send(Err(BusError::Unavailable(
                        "the connection to redis broke".into(),
                    )));
                }
            }
            self.pinged = None;
            match ended {
                Ended::Cancelled => return,
                Ended::Broken(why) => {
                    tracing::warn!(error = %why, "lost the redis connection that listens; reconnecting");
                    down_since = Some(Instant::now());
                    self.emit(BusEvent::Disconnected);
                }
            }
        }
    }

    /// Opens a pub/sub connection and subscribes to every room's channels.
    async fn connect(&mut self) -> Result<Conn, String> {
        // Nothing of an attempt that failed half way waits on this one.
        self.confirming.clear();
        self.pinged = None;
        let limit = self.options.connect_timeout;
        let mut conn = Conn::open(&self.address, limit, self.options.max_message_bytes)
            .await
            .map_err(|e| e.to_string())?;
        let channels: Vec<String> = self
            .rooms
            .iter()
            .flat_map(|room| self.channel_names(room))
            .collect();
        for chunk in channels.chunks(SUBSCRIBE_CHUNK) {
            self.subscribe(&mut conn, chunk, None)
                .await
                .map_err(|e| e.to_string())?;
        }
        // Messages of the channels confirmed first may come before the last confirmation.
        let limit = self.options.response_timeout;
        tokio::time::timeout(limit, async {
            while !self.confirming.is_empty() {
                match conn.buffered()? {
                    Some(value) => self.value(value)?,
                    None => conn.fill().await?,
                }
            }
            Ok::<_, RespError>(())
        })
        .await
        .map_err(|_| format!("redis did not confirm the subscriptions within {limit:?}"))?
        .map_err(|e| e.to_string())?;
        Ok(conn)
    }

    /// Sends a SUBSCRIBE for `channels`; `done` hears once Redis confirmed all of them.
    async fn subscribe(
        &mut self,
        conn: &mut Conn,
        channels: &[String],
        done: Waiter,
    ) -> Result<(), RespError> {
        let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
        args.extend(channels.iter().map(|c| c.as_bytes()));
        conn.queue(&args);
        self.confirming.push_back((channels.len(), done));
        conn.flush().await
    }

    /// Listens until the connection breaks or the bus stops.
    async fn listen(
        &mut self,
        mut conn: Conn,
        control: &mut mpsc::UnboundedReceiver<Control>,
        cancel: &CancellationToken,
    ) -> Ended {
        let mut ping = tokio::time::interval(self.options.ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        // Rooms whose messages were dropped are reported as soon as the node has room for the
        // report, not only with the next message (which may never come).
        let mut report = tokio::time::interval(LAG_REPORT_EVERY);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Everything already read first: `fill` waits for the socket.
            loop {
                match conn.buffered() {
                    Ok(Some(value)) => {
                        if let Err(e) = self.value(value) {
                            return Ended::Broken(e.to_string());
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Ended::Broken(e.to_string()),
                }
            }
            tokio::select! {
                _ = report.tick(), if !self.lagged.is_empty() => self.report_lagged(),
                _ = cancel.cancelled() => return Ended::Cancelled,
                read = conn.fill() => {
                    if let Err(e) = read {
                        return Ended::Broken(e.to_string());
                    }
                }
                c = control.recv() => match c {
                    Some(Control::Subscribe { room, done }) => {
                        let channels = self.channel_names(&room);
                        self.rooms.insert(room);
                        if let Err(e) = self.subscribe(&mut conn, &channels, Some(done)).await {
                            return Ended::Broken(e.to_string());
                        }
                    }
                    Some(Control::Unsubscribe { room }) => {
                        self.forget(&room);
                        let channels = self.channel_names(&room);
                        conn.queue(&[b"UNSUBSCRIBE", channels[0].as_bytes(), channels[1].as_bytes()]);
                        if let Err(e) = conn.flush().await {
                            return Ended::Broken(e.to_string());
                        }
                    }
                    None => return Ended::Cancelled,
                },
                _ = ping.tick() => {
                    // A Redis gone without closing the connection is noticed here.
                    let limit = self.options.response_timeout;
                    if self.pinged.is_some_and(|at| at.elapsed() > limit) {
                        return Ended::Broken(format!("no answer to a ping within {limit:?}"));
                    }
                    if self.pinged.is_none() {
                        conn.queue(&[b"PING"]);
                        if let Err(e) = conn.flush().await {
                            return Ended::Broken(e.to_string());
                        }
                        self.pinged = Some(Instant::now());
                    }
                }
            }
        }
    }

    /// One value the listening connection read: a message, a confirmation, a pong.
    fn value(&mut self, value: Value) -> Result<(), RespError> {
        let items = match value {
            Value::Array(Some(items)) => items,
            Value::Error(e) => return Err(RespError::Refused(e)),
            other => {
                return Err(RespError::Protocol(format!(
                    "unexpected reply on the listening connection: {other:?}"
                )));
            }
        };
        match (
            items.first().and_then(Value::text),
            items.get(1),
            items.get(2),
        ) {
            (Some("message"), Some(channel), Some(Value::Bulk(Some(payload)))) => {
                match channel.text() {
                    Some(channel) => self.heard(channel, payload),
                    None => self.metrics.malformed.inc(),
                }
            }
            (Some("subscribe"), _, _) => {
                if let Some((left, _)) = self.confirming.front_mut() {
                    *left = left.saturating_sub(1);
                    if *left == 0
                        && let Some((_, Some(done))) = self.confirming.pop_front()
                    {
                        let _ = done.send(Ok(()));
                    }
                }
                while self.confirming.front().is_some_and(|(left, _)| *left == 0) {
                    self.confirming.pop_front();
                }
            }
            (Some("pong"), _, _) => self.pinged = None,
            (Some("unsubscribe"), _, _) => {}
            _ => self.metrics.malformed.inc(),
        }
        Ok(())
    }

    fn control_while_down(&mut self, control: Control) {
        match control {
            Control::Subscribe { room, done } => {
                self.rooms.insert(room);
                let _ = done.send(Err(BusError::Unavailable(
                    "not connected to redis; the room is subscribed as soon as it is".into(),
                )));
            }
            Control::Unsubscribe { room } => self.forget(&room),
        }
    }

    fn forget(&mut self, room: &RoomName) {
        self.rooms.remove(room);
        self.lagged.remove(room);
        self.gaps.forget(&(Channel::Updates, room.clone()));
        self.gaps.forget(&(Channel::Awareness, room.clone()));
    }

    fn channel_names(&self, room: &RoomName) -> [String; 2] {
        [
            Channel::Updates.name(&self.options.prefix, room),
            Channel::Awareness.name(&self.options.prefix, room),
        ]
    }

    /// One message from the bus.
    fn heard(&mut self, channel_name: &str, payload: &[u8]) {
        let Some((channel, room)) = Channel::parse(&self.options.prefix, channel_name) else {
            self.metrics.malformed.inc();
            tracing::debug!(
                channel = channel_name,
                "a bus message on a channel that names no room"
            );
            return;
        };
        if payload.len() > self.options.max_message_bytes {
            self.metrics.malformed.inc();
            tracing::warn!(room = %room.as_str(), bytes = payload.len(), "a bus message over the size limit; dropped");
            return;
        }
        let envelope = match decode_bus(payload) {
            Ok(envelope) if envelope.body.channel() == channel => envelope,
            Ok(_) => {
                self.metrics.malformed.inc();
                tracing::warn!(room = %room.as_str(), "a bus message on the wrong channel of its room; dropped");
                return;
            }
            Err(e) => {
                self.metrics.malformed.inc();
                tracing::warn!(room = %room.as_str(), error = %e, "a bus message that is not an envelope; dropped");
                return;
            }
        };
        if envelope.origin == self.origin && envelope.epoch == self.epoch {
            // Our own message: Redis sends it back to the node that published it.
            return;
        }
        if !self.rooms.contains(&room) {
            // Sent before our UNSUBSCRIBE took effect.
            return;
        }
        let seen = self.gaps.observe(
            (channel, room.clone()),
            &envelope.origin,
            envelope.epoch,
            envelope.counter,
            envelope.prev,
        );
        match seen {
            Seen::Duplicate | Seen::Stale => {
                self.metrics.duplicates.inc();
                return;
            }
            seen if seen.missed() => self.metrics.gaps.inc(),
            _ => {}
        }
        self.metrics.received.inc();
        self.emit_message(BusEvent::Message {
            room,
            envelope,
            seen,
        });
    }

    /// Tells the node which rooms' messages it dropped, if it has room for that now.
    fn report_lagged(&mut self) {
        if self.lagged.is_empty() {
            return;
        }
        let rooms: Vec<RoomName> = self.lagged.iter().cloned().collect();
        if self.events.offer(BusEvent::Lagged { rooms }).is_ok() {
            self.lagged.clear();
        }
    }

    /// Hands the node a message, or drops it and remembers its room if the node is behind.
    fn emit_message(&mut self, event: BusEvent) {
        self.report_lagged();
        if let Err(refused) = self.events.offer(event)
            && let BusEvent::Message { room, .. } = *refused
        {
            self.metrics.lagged.inc();
            self.lagged.insert(room);
        }
    }

    /// Hands the node a connection event. Dropped if the node is that far behind: after a
    /// `Disconnected` it will hear `Reconnected` (or lagged rooms) before anything else.
    fn emit(&mut self, event: BusEvent) {
        if self.events.offer(event).is_err() {
            tracing::warn!("the node is behind the bus; a connection event was dropped");
            self.lagged.extend(self.rooms.iter().cloned());
        }
    }
}

/// Debug builds only: `DUET_FAILPOINT_BUS_DROP_EVERY=N` makes a node drop every Nth message
/// it publishes, numbered first so that receivers see the gap: anti-entropy must repair it.
#[cfg(debug_assertions)]
mod failpoint {
    pub const ENV: &str = "DUET_FAILPOINT_BUS_DROP_EVERY";

    pub fn from_env() -> Option<u64> {
        let every = std::env::var(ENV).ok()?.parse().ok()?;
        tracing::warn!("failpoint {ENV}: dropping every {every}th published bus message");
        Some(every)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter() {
        let options = RedisOptions {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            ..RedisOptions::default()
        };
        let mut backoff = Backoff::new(&options, 3);
        for (failures, full) in [
            (0, 100),
            (1, 200),
            (2, 400),
            (3, 800),
            (4, 1000),
            (30, 1000),
        ] {
            let d = backoff.delay(failures);
            let full = Duration::from_millis(full);
            assert!(
                d >= full / 2 && d <= full,
                "{failures}: {d:?} outside {full:?}/2..={full:?}"
            );
        }
    }

    #[test]
    fn a_bad_address_is_refused_without_repeating_it() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let Err(err) = RedisBus::start(
            "http://user:secret@example.invalid",
            NodeId::new("n").unwrap(),
            1,
            RedisOptions::default(),
        ) else {
            panic!("an http address is not a redis one");
        };
        let message = err.to_string();
        assert!(!message.contains("secret"), "{message}");
    }
}
