//! Capture planning support: while the engine plans a kernel-side capture
//! (a dry run of the reading code on marker values, see
//! `engine::capture_plan`), decoders whose reads depend on the data in a
//! way markers cannot stand for say so here, and the plan is refused.
//! Outside planning nothing here does anything.

use std::cell::RefCell;

thread_local! {
    /// `Some` while planning: the first reason the capture cannot be planned.
    static PLANNING: RefCell<Option<Option<String>>> = const { RefCell::new(None) };
}

/// Runs `f` as a planning dry run; returns its result and why the capture
/// cannot be planned, if a decoder said so.
pub fn plan<T>(f: impl FnOnce() -> T) -> (T, Option<String>) {
    PLANNING.with(|p| *p.borrow_mut() = Some(None));
    let result = f();
    let refused = PLANNING.with(|p| p.borrow_mut().take().flatten());
    (result, refused)
}

/// Whether a planning dry run is going on (on this thread).
pub fn active() -> bool {
    PLANNING.with(|p| p.borrow().is_some())
}

/// Notes that what is being decoded cannot be planned (first reason wins).
pub fn refuse(reason: String) {
    PLANNING.with(|p| {
        if let Some(slot) = p.borrow_mut().as_mut()
            && slot.is_none()
        {
            *slot = Some(reason);
        }
    });
}
