//! The slot table: every open connection by token, here on the reactor or away at a
//! worker, with what the connection caps count (open connections, connections per peer)
//! and the queue of idle connections to close first when the table is full.
//!
//! It is generic over what a slot holds, so that it is tested without sockets; the
//! reactor keeps [`Connection`](super::connection::Connection)s in it.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// A connection's place in the table.
#[derive(Debug)]
enum Slot<C> {
    Free {
        next: Option<usize>,
    },
    Here(C),
    /// At a worker; the slot (and so the token) stays reserved until it comes back,
    /// with what was reported for it meanwhile.
    Away(Seen),
}

/// Readiness reported for a connection while it was away at a worker. Readiness is edge
/// triggered, so it is reported once: a client that sends the rest of its request and
/// closes while its connection is away is not told of again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    /// Input arrived.
    pub(crate) readable: bool,
    /// The client's FIN (or an error) came with it: read on to the end of the stream,
    /// or the close is never noticed and the connection holds its slot until a timeout.
    pub(crate) hup: bool,
}

/// What the table keeps of a slot whatever its state.
#[derive(Clone, Copy, Debug, Default)]
struct Meta {
    /// The peer's address, kept while the connection is away too.
    peer: Option<IpAddr>,
    /// The idle spell the slot's connection is in (0: never queued as idle): an entry of
    /// the idle queue naming an older spell (or a freed slot) is stale. 32 bits, as a
    /// slot's metadata is kept for every slot: a stale entry is dropped long before the
    /// spells wrap round (see `queue_idle`).
    spell: u32,
}

/// Connections by token, with a free list so tokens are reused.
#[derive(Debug)]
pub(crate) struct Slots<C> {
    slots: Vec<Slot<C>>,
    meta: Vec<Meta>,
    free: Option<usize>,
    /// Connections open, here or away: what `max_connections` limits.
    live: usize,
    /// Connections open per peer address: what `max_connections_per_peer` limits.
    per_peer: HashMap<IpAddr, usize>,
    /// Connections with no request under way (just accepted, or idle between requests),
    /// oldest first, each with the idle spell it was queued for; entries whose
    /// connection moved on are skipped when met. At the cap the oldest is closed to make
    /// room, so that one client's idle connections cannot lock everyone else out.
    idle: VecDeque<(usize, u32)>,
    /// The spell given next; never 0.
    next_spell: u32,
}

impl<C> Default for Slots<C> {
    fn default() -> Self {
        Slots {
            slots: Vec::new(),
            meta: Vec::new(),
            free: None,
            live: 0,
            per_peer: HashMap::new(),
            idle: VecDeque::new(),
            next_spell: 1,
        }
    }
}

impl<C> Slots<C> {
    /// Places a new connection from `ip` and returns its slot.
    pub(crate) fn insert(&mut self, conn: C, ip: IpAddr) -> usize {
        self.live += 1;
        *self.per_peer.entry(ip).or_insert(0) += 1;
        let i = self.place(conn);
        if self.meta.len() <= i {
            self.meta.resize(i + 1, Meta::default());
        }
        self.meta[i] = Meta {
            peer: Some(ip),
            spell: 0,
        };
        i
    }

    fn place(&mut self, conn: C) -> usize {
        match self.free {
            Some(i) => {
                self.free = match self.slots[i] {
                    Slot::Free { next } => next,
                    _ => None,
                };
                self.slots[i] = Slot::Here(conn);
                i
            }
            None => {
                self.slots.push(Slot::Here(conn));
                self.slots.len() - 1
            }
        }
    }

    /// Connections open, here or away.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Slots ever used: every token is below this.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Connections open from `ip`.
    pub(crate) fn count_from(&self, ip: IpAddr) -> usize {
        self.per_peer.get(&ip).copied().unwrap_or(0)
    }

    pub(crate) fn peek(&self, i: usize) -> Option<&C> {
        match self.slots.get(i) {
            Some(Slot::Here(conn)) => Some(conn),
            _ => None,
        }
    }

    pub(crate) fn get(&mut self, i: usize) -> Option<&mut C> {
        match self.slots.get_mut(i) {
            Some(Slot::Here(conn)) => Some(conn),
            _ => None,
        }
    }

    /// Hands a connection out, keeping its slot.
    pub(crate) fn lend(&mut self, i: usize) -> Option<C> {
        match self.slots.get_mut(i) {
            Some(slot @ Slot::Here(_)) => {
                match std::mem::replace(slot, Slot::Away(Seen::default())) {
                    Slot::Here(conn) => Some(conn),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Puts a lent connection back in its slot; returns what was reported for it while
    /// it was away. A connection whose slot was freed meanwhile is dropped.
    pub(crate) fn give_back(&mut self, i: usize, conn: C) -> Seen {
        match self.slots.get_mut(i) {
            Some(Slot::Away(seen)) => {
                let seen = *seen;
                self.slots[i] = Slot::Here(conn);
                seen
            }
            _ => Seen::default(),
        }
    }

    /// Notes readiness reported for a connection that is away at a worker; `hup`: the
    /// client's FIN came with it.
    pub(crate) fn mark_away_readable(&mut self, i: usize, hup: bool) {
        if let Some(Slot::Away(seen)) = self.slots.get_mut(i) {
            seen.readable = true;
            seen.hup |= hup;
        }
    }

    /// Frees a slot, here or away, and returns the connection if it was here (the
    /// caller releases what it holds; dropping it closes its socket).
    pub(crate) fn remove(&mut self, i: usize) -> Option<C> {
        let slot = self.slots.get_mut(i)?;
        if let Slot::Free { .. } = slot {
            return None;
        }
        let old = std::mem::replace(slot, Slot::Free { next: self.free });
        self.free = Some(i);
        self.live -= 1;
        let meta = std::mem::take(&mut self.meta[i]);
        if let Some(ip) = meta.peer {
            if let Some(n) = self.per_peer.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.per_peer.remove(&ip);
                }
            }
        }
        match old {
            Slot::Here(conn) => Some(conn),
            _ => None,
        }
    }

    /// Queues the connection in slot `i`, which just became idle (or was just
    /// accepted), for [`close_oldest_idle`](Self::close_oldest_idle).
    pub(crate) fn queue_idle(&mut self, i: usize, is_idle: impl Fn(&C) -> bool) {
        if self.peek(i).is_none() {
            return;
        }
        let spell = self.next_spell;
        self.next_spell = self.next_spell.checked_add(1).unwrap_or(1);
        self.meta[i].spell = spell;
        self.idle.push_back((i, spell));
        // Stale entries are dropped lazily; this bounds how many can pile up.
        if self.idle.len() > 2 * self.live + 64 {
            let mut idle = std::mem::take(&mut self.idle);
            idle.retain(|&(i, spell)| self.is_idle_in(i, spell, &is_idle));
            self.idle = idle;
        }
    }

    /// Frees the slot of the connection idle the longest, if any, and returns it.
    pub(crate) fn close_oldest_idle(&mut self, is_idle: impl Fn(&C) -> bool) -> Option<C> {
        while let Some((i, spell)) = self.idle.pop_front() {
            if self.is_idle_in(i, spell, &is_idle) {
                return self.remove(i);
            }
        }
        None
    }

    /// Whether slot `i` holds a connection still in the idle spell `spell`: queued then,
    /// and with nothing under way since.
    fn is_idle_in(&self, i: usize, spell: u32, is_idle: &impl Fn(&C) -> bool) -> bool {
        self.meta.get(i).is_some_and(|m| m.spell == spell) && self.peek(i).is_some_and(is_idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for a connection: just whether it has a request under way.
    #[derive(Debug, PartialEq)]
    struct Fake {
        name: &'static str,
        busy: bool,
    }

    fn fake(name: &'static str) -> Fake {
        Fake { name, busy: false }
    }

    fn idle(c: &Fake) -> bool {
        !c.busy
    }

    /// A connection just accepted: placed and queued as idle, as the reactor does.
    fn accepted(slots: &mut Slots<Fake>, name: &'static str) -> usize {
        let i = slots.insert(fake(name), A);
        slots.queue_idle(i, idle);
        i
    }

    /// Closes the connection idle the longest and names it.
    fn close_oldest(slots: &mut Slots<Fake>) -> Option<&'static str> {
        slots.close_oldest_idle(idle).map(|c| c.name)
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn freed_slots_are_reused_last_freed_first() {
        let mut slots = Slots::default();
        let a = slots.insert(fake("a"), A);
        let b = slots.insert(fake("b"), A);
        let c = slots.insert(fake("c"), A);
        assert_eq!((a, b, c), (0, 1, 2));
        assert_eq!(slots.remove(a).map(|c| c.name), Some("a"));
        assert_eq!(slots.remove(c).map(|c| c.name), Some("c"));
        assert_eq!(slots.insert(fake("d"), A), c);
        assert_eq!(slots.insert(fake("e"), A), a);
        assert_eq!(slots.insert(fake("f"), A), 3);
        assert_eq!(slots.live(), 4);
    }

    #[test]
    fn removing_a_free_slot_twice_changes_nothing() {
        let mut slots = Slots::default();
        let a = slots.insert(fake("a"), A);
        assert!(slots.remove(a).is_some());
        assert!(slots.remove(a).is_none());
        assert!(slots.remove(99).is_none());
        assert_eq!(slots.live(), 0);
        assert_eq!(slots.count_from(A), 0);
    }

    #[test]
    fn per_peer_counts_follow_inserts_and_removals_here_or_away() {
        let mut slots = Slots::default();
        let a1 = slots.insert(fake("a1"), A);
        let a2 = slots.insert(fake("a2"), A);
        let b1 = slots.insert(fake("b1"), B);
        assert_eq!((slots.count_from(A), slots.count_from(B)), (2, 1));
        // Away at a worker still counts, and removing it there uncounts it.
        assert!(slots.lend(a2).is_some());
        assert_eq!(slots.count_from(A), 2);
        assert!(slots.remove(a2).is_none(), "nothing is here to hand back");
        assert_eq!(slots.count_from(A), 1);
        slots.remove(a1);
        slots.remove(b1);
        assert_eq!(
            (slots.count_from(A), slots.count_from(B), slots.live()),
            (0, 0, 0)
        );
        assert!(
            slots.per_peer.is_empty(),
            "no entry is kept for a peer gone"
        );
    }

    #[test]
    fn lent_connection_keeps_its_slot_and_reports_readiness_seen_while_away() {
        let mut slots = Slots::default();
        let a = slots.insert(fake("a"), A);
        let conn = slots.lend(a).unwrap();
        assert!(slots.get(a).is_none(), "away, not here");
        assert!(slots.lend(a).is_none());
        assert_eq!(slots.insert(fake("b"), A), 1, "an away slot is not free");
        slots.mark_away_readable(a, false);
        let readable = Seen {
            readable: true,
            hup: false,
        };
        assert_eq!(slots.give_back(a, conn), readable);
        assert_eq!(slots.peek(a).map(|c| c.name), Some("a"));
        let conn = slots.lend(a).unwrap();
        assert_eq!(
            slots.give_back(a, conn),
            Seen::default(),
            "no readiness this time"
        );
    }

    #[test]
    fn a_close_reported_while_away_comes_back_with_the_connection() {
        let mut slots = Slots::default();
        let a = slots.insert(fake("a"), A);
        let conn = slots.lend(a).unwrap();
        // The rest of a request, then the client's FIN: two reports, the last with hup.
        slots.mark_away_readable(a, false);
        slots.mark_away_readable(a, true);
        slots.mark_away_readable(a, false);
        let seen = slots.give_back(a, conn);
        assert!(seen.readable && seen.hup, "{seen:?}");
    }

    #[test]
    fn connection_coming_back_to_a_freed_slot_is_dropped() {
        let mut slots = Slots::default();
        let a = slots.insert(fake("a"), A);
        let conn = slots.lend(a).unwrap();
        slots.remove(a);
        assert_eq!(slots.give_back(a, conn), Seen::default());
        assert!(slots.peek(a).is_none());
        assert_eq!(slots.live(), 0);
    }

    #[test]
    fn oldest_idle_connection_is_closed_first() {
        let mut slots = Slots::default();
        accepted(&mut slots, "a");
        accepted(&mut slots, "b");
        assert_eq!(close_oldest(&mut slots), Some("a"));
        assert_eq!(close_oldest(&mut slots), Some("b"));
        assert_eq!(close_oldest(&mut slots), None);
        assert_eq!(slots.live(), 0);
    }

    #[test]
    fn busy_connection_is_never_closed_as_idle() {
        let mut slots = Slots::default();
        let a = accepted(&mut slots, "a");
        if let Some(c) = slots.get(a) {
            c.busy = true;
        }
        assert_eq!(close_oldest(&mut slots), None);
        assert_eq!(slots.live(), 1);
    }

    #[test]
    fn idle_entry_of_an_earlier_spell_is_stale_when_the_connection_idles_again() {
        let mut slots = Slots::default();
        let a = accepted(&mut slots, "a");
        accepted(&mut slots, "b");
        // `a` served a request and idles again: it is now younger than `b`.
        slots.queue_idle(a, idle);
        assert_eq!(close_oldest(&mut slots), Some("b"));
        assert_eq!(close_oldest(&mut slots), Some("a"));
    }

    #[test]
    fn idle_entry_of_a_reused_slot_is_stale() {
        let mut slots = Slots::default();
        let a = accepted(&mut slots, "a");
        slots.remove(a);
        // The slot is reused by a connection never queued as idle.
        assert_eq!(slots.insert(fake("b"), A), a);
        assert_eq!(close_oldest(&mut slots), None);
        assert_eq!(slots.live(), 1);
    }

    #[test]
    fn spells_wrap_round_past_zero_which_means_never_queued() {
        let mut slots = Slots {
            next_spell: u32::MAX,
            ..Slots::default()
        };
        let a = accepted(&mut slots, "a");
        accepted(&mut slots, "b");
        assert_eq!(slots.meta[a].spell, u32::MAX);
        assert_eq!(slots.next_spell, 2, "0 is skipped");
        assert_eq!(close_oldest(&mut slots), Some("a"));
        assert_eq!(close_oldest(&mut slots), Some("b"));
    }

    #[test]
    fn stale_idle_entries_stay_bounded_when_one_connection_idles_many_times() {
        let mut slots = Slots::default();
        let a = slots.insert(fake("a"), A);
        for _ in 0..10_000 {
            slots.queue_idle(a, idle);
        }
        assert!(
            slots.idle.len() <= 2 * slots.live() + 65,
            "{}",
            slots.idle.len()
        );
    }
}
