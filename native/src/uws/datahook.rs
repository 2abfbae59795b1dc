//! Seeing HTTP bytes before uWS parses them: the HTTP socket context's data
//! handler (uSockets' `on_data`) replaced by one that looks first and then
//! calls uWS's.
//!
//! uSockets has a setter for the handler but no getter, so the slot is found
//! by comparison: the first bytes of the context are read, the new handler is
//! set, and exactly one pointer-sized slot must have changed, to the new
//! handler's address; that slot's old contents are uWS's handler, which must
//! lie in the same library as uSockets. Anything else is an error when the
//! server starts listening, never a guess.

use std::ffi::c_void;
use std::mem::size_of;
use std::ptr;

use super::ffi::{Ptr, SocketDataHandler, Uws, SSL};

/// Bytes of `struct us_socket_context_t` compared: past its handlers (uWS
/// allocates its own context data right behind the struct, so the range is
/// always readable).
const SCANNED: usize = 128;
const SLOTS: usize = SCANNED / size_of::<usize>();

/// # Safety
/// `context` must be a live uSockets socket context (at least `SCANNED` bytes).
unsafe fn snapshot(context: Ptr) -> [usize; SLOTS] {
    let slots = context.cast::<usize>();
    std::array::from_fn(|i| ptr::read_volatile(slots.add(i)))
}

/// The shared object holding `addr` (its load address), if any.
fn object_of(addr: *const c_void) -> Option<usize> {
    // SAFETY: dladdr only reads its arguments and fills `info`.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        (libc::dladdr(addr, &mut info) != 0 && !info.dli_fbase.is_null())
            .then_some(info.dli_fbase as usize)
    }
}

/// The one slot that changed between two snapshots, to `new`: where the
/// handler lives.
fn changed_slot(before: &[usize], after: &[usize], new: usize) -> Result<usize, String> {
    let changed: Vec<usize> = (0..before.len().min(after.len()))
        .filter(|&i| before[i] != after[i])
        .collect();
    match changed.as_slice() {
        [slot] if after[*slot] == new => Ok(*slot),
        _ => Err(format!(
            "cannot find uSockets' data handler in its socket context ({} slots changed)",
            changed.len()
        )),
    }
}

/// Sets `hook` as the data handler of `context` and returns the handler it
/// replaced.
///
/// # Safety
/// `context` must be a live uSockets socket context of `uws`'s library whose
/// handlers are set (uWS's HTTP context), with no other thread using it.
pub unsafe fn replace_on_data(
    uws: &Uws,
    context: Ptr,
    hook: SocketDataHandler,
) -> Result<SocketDataHandler, String> {
    let before = snapshot(context);
    (uws.us_socket_context_on_data)(SSL, context, hook);
    let after = snapshot(context);
    let original = before[changed_slot(&before, &after, hook as *const () as usize)?];
    let library = object_of(uws.us_socket_context_on_data as *const c_void);
    if original == 0 || object_of(original as *const c_void) != library {
        return Err("uSockets' data handler is not in its library".to_owned());
    }
    // SAFETY: a non-null function address from uSockets' own data handler
    // slot, in the library that declares it with this signature.
    Ok(std::mem::transmute::<usize, SocketDataHandler>(original))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_slot_must_change_to_the_new_handler() {
        let before = [1, 2, 3, 4];
        assert_eq!(changed_slot(&before, &[1, 2, 9, 4], 9), Ok(2));
        for after in [[1, 2, 3, 4], [1, 2, 8, 4], [9, 2, 9, 4]] {
            let err = changed_slot(&before, &after, 9).unwrap_err();
            assert!(err.contains("cannot find"), "{err}");
        }
    }

    #[test]
    fn snapshots_read_pointer_slots() {
        let words: [usize; SLOTS] = std::array::from_fn(|i| i * 3);
        // SAFETY: the array is SCANNED bytes long.
        let copy = unsafe { snapshot(ptr::from_ref(&words).cast_mut().cast()) };
        assert_eq!(copy, words);
        assert!(object_of(snapshot as *const c_void).is_some());
        assert_eq!(object_of(ptr::null()), None);
    }
}
