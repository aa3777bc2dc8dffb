//! `WS_MAX_SOCKETS_PER_IP`: open WebSockets per client address (an IPv6 /64 counts as one).
//! Mini-apps on mobile networks share addresses behind carrier NAT, so the cap is generous; it
//! stops one address from holding every connection of the instance.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use super::rate_limit::ip_key;

pub struct SocketsPerIp {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open socket's place; dropping it frees the place.
pub struct SocketSlot {
    owner: Arc<SocketsPerIp>,
    key: IpAddr,
}

impl SocketsPerIp {
    pub fn new(max: usize) -> Arc<SocketsPerIp> {
        Arc::new(SocketsPerIp {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more socket of `ip`, or `None` when it already holds the maximum.
    pub fn try_open(self: &Arc<Self>, ip: IpAddr) -> Option<SocketSlot> {
        let key = ip_key(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(SocketSlot {
            owner: self.clone(),
            key,
        })
    }

    /// Sockets open for `ip` now.
    #[cfg(test)]
    pub fn open_for(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&ip_key(ip)).copied().unwrap_or(0)
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut open = self
            .owner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_holds_per_address_and_a_closed_socket_frees_its_place() {
        let sockets = SocketsPerIp::new(2);
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        let b: IpAddr = "198.51.100.2".parse().unwrap();
        let first = sockets.try_open(a).unwrap();
        let _second = sockets.try_open(a).unwrap();
        assert!(sockets.try_open(a).is_none());
        assert!(
            sockets.try_open(b).is_some(),
            "another address is unaffected"
        );
        drop(first);
        assert_eq!(sockets.open_for(a), 1);
        assert!(sockets.try_open(a).is_some());
        // One IPv6 /64 is one client.
        let v6a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8:1:2::2".parse().unwrap();
        let _x = sockets.try_open(v6a).unwrap();
        let _y = sockets.try_open(v6b).unwrap();
        assert!(sockets.try_open(v6a).is_none());
    }
}
