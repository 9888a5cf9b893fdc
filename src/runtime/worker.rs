//! One worker: one thread, one `mio::Poll`, shared nothing. Owns listeners,
//! the connection slab, the upstream pool and the timers.

use super::buf::BufPool;
use super::client::{Client, Phase};
use super::control::{Shared, WorkerMsg};
use super::ids::RequestIds;
use super::slab::Slab;
use super::timer::Timers;
use super::transport::Transport;
use super::upstream::{Pool, UpstreamConn};
use crate::lua::{Cache, LuaHost};
use crate::pipeline::Generation;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Tokens below this are listeners; connections are `CONN_BASE + slab key`.
pub(crate) const CONN_BASE: usize = 1 << 16;
pub(crate) const WAKER: Token = Token(usize::MAX);

pub(crate) struct Listener {
    pub(crate) sock: TcpListener,
    pub(crate) addr: SocketAddr,
    /// Name of the network it belongs to (routing looks it up by name, so
    /// a listener kept across a reload keeps working).
    pub(crate) net: Arc<str>,
    /// A `[network.N.dicom]` listener (DICOM associations, not HTTP).
    pub(crate) dicom: bool,
}

/// Who owns an upstream connection's slab slot.
#[derive(Clone, Copy)]
pub(crate) enum Owner {
    Client(usize),
    Pool(SocketAddr),
}

pub(crate) enum Slot {
    /// `None` while the client is being driven (taken out of the slab).
    Client(Option<Box<Client>>),
    Upstream(Owner),
    /// A DICOM association's client socket (`None` while driven).
    Dicom(Option<Box<super::dicom::DicomConn>>),
    /// A DICOM association's backend socket: the key of its client socket.
    DicomBack(usize),
}

pub(crate) struct Worker {
    pub(crate) poll: Poll,
    /// Listener slots; the token of a listener is its index (None once removed).
    pub(crate) listeners: Vec<Option<Listener>>,
    pub(crate) slab: Slab<Slot>,
    pub(crate) pool: Pool,
    pub(crate) timers: Timers,
    pub(crate) bufs: BufPool,
    pub(crate) gen: Arc<Generation>,
    /// This worker's Lua host for `gen` (None when no pipeline uses Lua).
    pub(crate) lua: Option<Rc<LuaHost>>,
    /// `harmony.cache`: per worker, kept across generations.
    pub(crate) cache: Rc<RefCell<Cache>>,
    pub(crate) now: Instant,
    pub(crate) ids: RequestIds,
    pub(crate) clients: usize,
    pub(crate) accept_paused: bool,
    pub(crate) draining: bool,
    /// Clients that used up their turn with work left; driven again next turn.
    again: Vec<usize>,
    pub(crate) shared: Arc<Shared>,
    /// This worker's index (for metrics and reload replies).
    pub(crate) index: usize,
    inbox: Receiver<WorkerMsg>,
}

impl Worker {
    /// Build a worker on its own thread (its Lua state stays there).
    pub(crate) fn new(
        gen: Arc<Generation>,
        listeners: Vec<Listener>,
        shared: Arc<Shared>,
        index: usize,
        inbox: Receiver<WorkerMsg>,
    ) -> Result<(Self, Arc<Waker>), String> {
        let io = |e: io::Error| e.to_string();
        let poll = Poll::new().map_err(io)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(io)?);
        let mut listeners = listeners;
        for (i, l) in listeners.iter_mut().enumerate() {
            poll.registry().register(&mut l.sock, Token(i), Interest::READABLE).map_err(io)?;
        }
        let listeners = listeners.into_iter().map(Some).collect();
        let cache = Rc::new(RefCell::new(Cache::new(gen.lua.cache_entries)));
        let lua = build_lua(&gen, cache.clone()).map_err(|e| e.join("; "))?;
        let pool = Pool::new(gen.settings.upstream_pool_size);
        Ok((
            Worker {
                poll,
                listeners,
                slab: Slab::new(),
                pool,
                timers: Timers::new(),
                bufs: BufPool::new(),
                gen,
                lua,
                cache,
                now: Instant::now(),
                ids: RequestIds::new(index),
                clients: 0,
                accept_paused: false,
                draining: false,
                again: Vec::new(),
                shared,
                index,
                inbox,
            },
            waker,
        ))
    }

    /// Run until shut down and drained.
    pub(crate) fn run(mut self) {
        crate::logging::buffer_this_thread();
        let mut events = Events::with_capacity(1024);
        let mut drain_deadline: Option<Instant> = None;
        loop {
            let timeout = if self.again.is_empty() {
                self.timers.poll_timeout(self.now).map_or(Duration::from_secs(1), |t| t.min(Duration::from_secs(1)))
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("poll failed: {e}");
                    break;
                }
            }
            self.now = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    Token(t) if t < CONN_BASE => self.accept(t),
                    Token(t) => {
                        let key = t - CONN_BASE;
                        let hup = ev.is_read_closed() || ev.is_error();
                        let readable = ev.is_readable() || hup;
                        let writable = ev.is_writable() || ev.is_write_closed() || ev.is_error();
                        self.on_event(key, readable, writable, hup);
                    }
                }
            }
            while let Some(key) = self.timers.pop_due(self.now) {
                self.on_timer(key);
            }
            for key in std::mem::take(&mut self.again) {
                if let Some(c) = self.take_client(key) {
                    self.drive(key, c);
                }
            }
            if self.accept_paused && self.clients < self.gen.settings.max_connections {
                self.accept_paused = false;
                for i in 0..self.listeners.len() {
                    self.accept(i);
                }
            }
            self.process_inbox();
            if !self.draining && self.shared.shutdown.load(Ordering::Acquire) {
                self.start_drain();
                drain_deadline = Some(self.now + self.gen.settings.drain_timeout);
            }
            crate::logging::flush_thread();
            if self.draining {
                if self.clients == 0 {
                    break;
                }
                if drain_deadline.is_some_and(|d| self.now >= d) {
                    log::warn!("drain timeout: closing {} connection(s) with work in flight", self.clients);
                    break;
                }
            }
        }
        for c in self.pool.drain_all() {
            drop(c);
        }
        crate::logging::flush_thread();
    }

    fn accept(&mut self, li: usize) {
        if self.draining {
            return;
        }
        loop {
            if self.clients >= self.gen.settings.max_connections {
                self.accept_paused = true;
                return;
            }
            let Some(Some(l)) = self.listeners.get(li) else { return };
            match l.sock.accept() {
                Ok((mut sock, peer)) => {
                    let net = l.net.clone();
                    if let Err(e) = sock.set_nodelay(true) {
                        log::debug!("set_nodelay on {peer}: {e}");
                    }
                    if l.dicom {
                        self.accept_dicom(sock, peer, net);
                        continue;
                    }
                    let key = self.slab.insert(Slot::Client(None));
                    let token = Token(CONN_BASE + key);
                    if let Err(e) =
                        self.poll.registry().register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
                    {
                        log::warn!("register {peer}: {e}");
                        self.slab.remove(key);
                        continue;
                    }
                    self.clients += 1;
                    self.shared.open_connections[self.index].store(self.clients, Ordering::Relaxed);
                    let c = Box::new(Client::new(Transport::Plain(sock), key, peer, net, self.now, self.gen.clone()));
                    self.put_client(key, c);
                    // data may already be waiting; edge-triggered readiness will also report it
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: back off until a connection closes
                    log::warn!("accept failed: {e}");
                    self.accept_paused = true;
                    return;
                }
            }
        }
    }

    pub(crate) fn take_client(&mut self, key: usize) -> Option<Box<Client>> {
        match self.slab.get_mut(key) {
            Some(Slot::Client(c)) => c.take(),
            _ => None,
        }
    }

    pub(crate) fn put_client(&mut self, key: usize, c: Box<Client>) {
        if let Some(Slot::Client(slot)) = self.slab.get_mut(key) {
            *slot = Some(c);
        }
    }

    /// Who a slab key belongs to: `Some(None)` a client, `Some(Some(o))` an
    /// upstream connection and its owner, `None` nothing (a stale token).
    fn owner_of(&self, key: usize) -> Option<Option<Owner>> {
        match self.slab.get(key)? {
            Slot::Client(_) => Some(None),
            Slot::Upstream(o) => Some(Some(*o)),
            // handled by dicom_event / dicom_timer before this is asked
            Slot::Dicom(_) | Slot::DicomBack(_) => None,
        }
    }

    fn on_event(&mut self, key: usize, readable: bool, writable: bool, hup: bool) {
        if self.dicom_event(key, readable, writable, hup) {
            return;
        }
        let Some(owner) = self.owner_of(key) else { return };
        match owner {
            None => {
                let Some(mut c) = self.take_client(key) else { return };
                c.rd |= readable;
                c.wr |= writable;
                c.hup |= hup;
                self.drive(key, c);
            }
            Some(Owner::Client(ck)) => {
                let Some(mut c) = self.take_client(ck) else { return };
                if let Some(up) = c.up.as_mut() {
                    if up.key == key {
                        up.rd |= readable;
                        up.wr |= writable;
                        up.hup |= hup;
                    }
                }
                self.drive(ck, c);
            }
            Some(Owner::Pool(addr)) => {
                // an idle pooled connection became readable: the upstream
                // closed it (or sent garbage) — either way it is unusable
                if readable {
                    if let Some(up) = self.pool.remove(addr, key) {
                        self.close_upstream(up);
                    }
                }
            }
        }
    }

    fn on_timer(&mut self, key: usize) {
        if self.dicom_timer(key) {
            return;
        }
        let Some(owner) = self.owner_of(key) else { return };
        match owner {
            None => {
                let Some(mut c) = self.take_client(key) else { return };
                c.armed = None;
                self.on_client_timer(&mut c);
                self.drive(key, c);
            }
            Some(Owner::Client(ck)) => {
                if let Some(Slot::Client(Some(c))) = self.slab.get_mut(ck) {
                    if let Some(up) = c.up.as_mut() {
                        up.armed = false;
                    }
                }
            }
            Some(Owner::Pool(addr)) => {
                let now = self.now;
                let expired = match self.pool.get_mut(addr, key) {
                    Some(up) => {
                        up.armed = false;
                        if up.idle_deadline <= now {
                            true
                        } else {
                            up.armed = true;
                            self.timers.push(up.idle_deadline, key);
                            false
                        }
                    }
                    None => false,
                };
                if expired {
                    if let Some(up) = self.pool.remove(addr, key) {
                        self.close_upstream(up);
                    }
                }
            }
        }
    }

    /// Drive a client (and its upstream) as far as possible, then put it back
    /// or tear it down.
    pub(crate) fn drive(&mut self, key: usize, mut c: Box<Client>) {
        if self.progress(&mut c) {
            self.again.push(key);
        }
        if c.phase == Phase::Closed {
            self.destroy_client(key, c);
        } else {
            self.arm_client_timer(&mut c);
            self.put_client(key, c);
        }
    }

    fn arm_client_timer(&mut self, c: &mut Client) {
        if let Some((at, _)) = self.client_deadline(c) {
            if c.armed.is_none_or(|a| at < a) {
                self.timers.push(at, c.key);
                c.armed = Some(at);
            }
        }
    }

    fn destroy_client(&mut self, key: usize, mut c: Box<Client>) {
        if c.ex.is_some() {
            self.abort_exchange(&mut c);
        }
        if let Some(up) = c.up.take() {
            self.close_upstream(up);
        }
        let _ = self.poll.registry().deregister(c.sock.socket());
        c.rbuf.release(&mut self.bufs);
        c.wbuf.clear();
        c.wbuf.release(&mut self.bufs);
        self.slab.remove(key);
        self.clients -= 1;
        self.shared.open_connections[self.index].store(self.clients, Ordering::Relaxed);
    }

    /// Register a fresh upstream connection in the slab and poll.
    pub(crate) fn new_upstream(&mut self, addr: SocketAddr, client: usize) -> io::Result<UpstreamConn> {
        let key = self.slab.insert(Slot::Upstream(Owner::Client(client)));
        let mut up = match UpstreamConn::connect(addr, key, self.now) {
            Ok(u) => u,
            Err(e) => {
                self.slab.remove(key);
                return Err(e);
            }
        };
        if let Err(e) =
            self.poll.registry().register(&mut up.sock, Token(CONN_BASE + key), Interest::READABLE | Interest::WRITABLE)
        {
            self.slab.remove(key);
            return Err(e);
        }
        Ok(up)
    }

    /// Take a pooled connection to `addr` for `client`, if one is idle.
    pub(crate) fn pooled_upstream(&mut self, addr: SocketAddr, client: usize) -> Option<UpstreamConn> {
        let mut up = self.pool.take(addr)?;
        if let Some(slot) = self.slab.get_mut(up.key) {
            *slot = Slot::Upstream(Owner::Client(client));
        }
        up.reused = true;
        Some(up)
    }

    /// Return a healthy upstream connection to the pool (or close it).
    pub(crate) fn release_upstream(&mut self, mut up: UpstreamConn) {
        if self.draining {
            self.close_upstream(up);
            return;
        }
        up.release_buffers(&mut self.bufs);
        up.idle_deadline = self.now + self.gen.settings.upstream_idle_timeout;
        let key = up.key;
        let addr = up.addr;
        let arm = !up.armed;
        up.armed = true;
        match self.pool.put(up) {
            Ok(()) => {
                if let Some(slot) = self.slab.get_mut(key) {
                    *slot = Slot::Upstream(Owner::Pool(addr));
                }
                if arm {
                    self.timers.push(self.now + self.gen.settings.upstream_idle_timeout, key);
                }
            }
            Err(up) => self.close_upstream(up),
        }
    }

    pub(crate) fn close_upstream(&mut self, mut up: UpstreamConn) {
        let _ = self.poll.registry().deregister(&mut up.sock);
        up.wbuf.clear();
        up.release_buffers(&mut self.bufs);
        self.slab.remove(up.key);
    }

    fn start_drain(&mut self) {
        self.draining = true;
        for mut l in std::mem::take(&mut self.listeners).into_iter().flatten() {
            let _ = self.poll.registry().deregister(&mut l.sock);
        }
        for up in self.pool.drain_all() {
            self.close_upstream(up);
        }
        for key in self.slab.keys() {
            if let Some(mut c) = self.take_client(key) {
                c.keep_alive = false;
                self.drive(key, c);
            }
        }
        log::info!("worker draining: {} connection(s) in flight", self.clients);
    }
}

/// The Lua host for a generation, if any of its middleware is Lua.
pub(crate) fn build_lua(gen: &Generation, cache: Rc<RefCell<Cache>>) -> Result<Option<Rc<LuaHost>>, Vec<String>> {
    if gen.lua_stages.is_empty() {
        return Ok(None);
    }
    LuaHost::build(&gen.lua.scripts_path, &gen.lua.limits, &gen.lua_stages, cache)
        .map(|h| Some(Rc::new(h)))
        .map_err(|e| e.0)
}

impl Worker {
    /// Messages from the main thread: new generations, reload answers.
    fn process_inbox(&mut self) {
        while let Ok(msg) = self.inbox.try_recv() {
            match msg {
                WorkerMsg::Swap { gen, add, remove } => self.swap(gen, add, remove),
                WorkerMsg::ReloadDone { client, outcome } => self.reload_done(client, outcome),
            }
        }
    }

    /// Serve a new generation. In-flight exchanges keep the one they pinned;
    /// the old Lua state is freed when the last of them ends.
    fn swap(&mut self, gen: Arc<Generation>, add: Vec<Listener>, remove: Vec<SocketAddr>) {
        match build_lua(&gen, self.cache.clone()) {
            Ok(lua) => {
                self.lua = lua;
                self.gen = gen;
            }
            Err(e) => {
                // validated on the main thread already; this would be a script that
                // behaves differently per state (init depending on randomness, ...)
                log::error!(
                    "worker {}: keeping generation {}: Lua failed here: {}",
                    self.index,
                    self.gen.id,
                    e.join("; ")
                );
                return;
            }
        }
        for addr in remove {
            for slot in self.listeners.iter_mut() {
                if slot.as_ref().is_some_and(|l| l.addr == addr) {
                    if let Some(mut l) = slot.take() {
                        let _ = self.poll.registry().deregister(&mut l.sock);
                    }
                }
            }
        }
        for mut l in add {
            let token = Token(self.listeners.len());
            match self.poll.registry().register(&mut l.sock, token, Interest::READABLE) {
                Ok(()) => {
                    self.listeners.push(Some(l));
                    self.accept(token.0);
                }
                Err(e) => log::error!("worker {}: cannot register listener {}: {e}", self.index, l.addr),
            }
        }
        // a kept listener may now belong to a renamed network
        for l in self.listeners.iter_mut().flatten() {
            let addr = Some(l.addr);
            if let Some(n) = self.gen.networks.iter().find(|n| if l.dicom { n.dicom == addr } else { n.http == addr }) {
                if *l.net != *n.name {
                    l.net = n.name.as_str().into();
                }
            }
        }
        self.pool.max_per_addr = self.gen.settings.upstream_pool_size;
        log::debug!("worker {} now serves generation {}", self.index, self.gen.id);
    }
}
