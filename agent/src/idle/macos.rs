//! macOS: `HIDIdleTime` (nanoseconds since the last input) from the IOHIDSystem entry of the
//! IOKit registry, which any process may read, and the screen lock from the Quartz session
//! dictionary when the agent runs in the user's session (the launchd agent).
//!
//! Not compiled by CI (no macOS target on the build machines); the conversion is
//! `super::macos_idle_seconds`, tested on every platform.

// FFI into IOKit, CoreFoundation and CoreGraphics: each call below states why it is sound.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void};

use greenops_protocol::Session;

use super::{IdleSource, Reading, macos_idle_seconds};

type CFTypeRef = *const c_void;
type IoObject = u32;

const K_IO_MAIN_PORT_DEFAULT: u32 = 0;
const K_CF_NUMBER_SINT64: isize = 4;
const K_CF_STRING_ENCODING_UTF8: u32 = 0x0800_0100;

#[link(name = "IOKit", kind = "framework")]
unsafe extern "C" {
    fn IOServiceMatching(name: *const c_char) -> *mut c_void;
    fn IOServiceGetMatchingService(main_port: u32, matching: *mut c_void) -> IoObject;
    fn IORegistryEntryCreateCFProperty(
        entry: IoObject,
        key: CFTypeRef,
        allocator: CFTypeRef,
        options: u32,
    ) -> CFTypeRef;
    fn IOObjectRelease(object: IoObject) -> i32;
}

#[link(name = "CoreFoundation", kind = "framework")]
unsafe extern "C" {
    fn CFStringCreateWithCString(alloc: CFTypeRef, s: *const c_char, encoding: u32) -> CFTypeRef;
    fn CFGetTypeID(cf: CFTypeRef) -> usize;
    fn CFNumberGetTypeID() -> usize;
    fn CFNumberGetValue(number: CFTypeRef, kind: isize, value: *mut c_void) -> u8;
    fn CFDictionaryGetValue(dict: CFTypeRef, key: CFTypeRef) -> CFTypeRef;
    fn CFRelease(cf: CFTypeRef);
}

#[link(name = "CoreGraphics", kind = "framework")]
unsafe extern "C" {
    fn CGSessionCopyCurrentDictionary() -> CFTypeRef;
}

/// A CoreFoundation string that is released when dropped.
struct CfString(CFTypeRef);

impl CfString {
    fn new(text: &std::ffi::CStr) -> Option<Self> {
        // SAFETY: `text` is NUL-terminated; a null allocator means the default one.
        let s = unsafe {
            CFStringCreateWithCString(std::ptr::null(), text.as_ptr(), K_CF_STRING_ENCODING_UTF8)
        };
        (!s.is_null()).then_some(Self(s))
    }
}

impl Drop for CfString {
    fn drop(&mut self) {
        // SAFETY: we own the one reference created above.
        unsafe { CFRelease(self.0) };
    }
}

fn hid_idle_ns() -> Result<u64, String> {
    // SAFETY: the class name is NUL-terminated; IOServiceGetMatchingService consumes the
    // matching dictionary (no release needed) and returns 0 when nothing matches.
    let service = unsafe {
        IOServiceGetMatchingService(
            K_IO_MAIN_PORT_DEFAULT,
            IOServiceMatching(c"IOHIDSystem".as_ptr()),
        )
    };
    if service == 0 {
        return Err("no IOHIDSystem service".into());
    }
    let key = CfString::new(c"HIDIdleTime").ok_or("cannot create a CFString")?;
    // SAFETY: `service` is a valid registry entry and `key` a live CFString; the returned
    // property is owned by us and released below.
    let property = unsafe { IORegistryEntryCreateCFProperty(service, key.0, std::ptr::null(), 0) };
    // SAFETY: `service` came from IOServiceGetMatchingService and is released exactly once.
    unsafe { IOObjectRelease(service) };
    if property.is_null() {
        return Err("IOHIDSystem has no HIDIdleTime".into());
    }
    let mut ns: i64 = 0;
    // SAFETY: `property` is a live CF object; the type is checked before reading it as a
    // 64-bit number into `ns`, which is valid for writes.
    let ok = unsafe {
        CFGetTypeID(property) == CFNumberGetTypeID()
            && CFNumberGetValue(property, K_CF_NUMBER_SINT64, (&mut ns as *mut i64).cast()) != 0
    };
    // SAFETY: we own `property` (a Create rule function returned it).
    unsafe { CFRelease(property) };
    if !ok || ns < 0 {
        return Err("HIDIdleTime is not a number".into());
    }
    Ok(ns as u64)
}

/// Whether the screen is locked; `false` when the agent is outside a GUI session.
fn screen_locked() -> bool {
    // SAFETY: returns an owned dictionary or null outside a GUI session.
    let dict = unsafe { CGSessionCopyCurrentDictionary() };
    if dict.is_null() {
        return false;
    }
    let locked = CfString::new(c"CGSSessionScreenIsLocked").is_some_and(|key| {
        // SAFETY: `dict` and `key` are live; the value is borrowed (Get rule), not released.
        !unsafe { CFDictionaryGetValue(dict, key.0) }.is_null()
    });
    // SAFETY: we own `dict` (a Copy rule function returned it).
    unsafe { CFRelease(dict) };
    locked
}

pub struct MacosSource;

impl MacosSource {
    pub fn new() -> Self {
        Self
    }
}

impl IdleSource for MacosSource {
    fn name(&self) -> &'static str {
        "macos-iokit"
    }

    fn read(&mut self) -> Result<Reading, String> {
        let ns = hid_idle_ns()?;
        Ok(Reading {
            idle_seconds: Some(macos_idle_seconds(ns)),
            session: if screen_locked() {
                Session::Locked
            } else {
                Session::Active
            },
            source: self.name(),
        })
    }
}
