//! A SQLite VFS that hands a commit's WAL frames to the kernel in one write.
//!
//! SQLite appends each WAL frame with two `pwrite` calls (its 24-byte header, then the
//! page), and a 4 KiB page written at a 4,120-byte stride straddles two page-cache pages:
//! a commit of 55 frames costs 110 system calls and ~165 page-cache lookups. This VFS is
//! the platform's default VFS with one change: a WAL file opened through it gathers
//! consecutive writes in memory and writes them out as one `pwrite` before anything that
//! can observe the file — a read, a sync, a size query, a truncate, a file-control call or
//! the close. So the bytes on disk, their order and the moment they are synced are what
//! SQLite asked for; only the number of calls changes. Other files (the database, its
//! journals) are opened by the default VFS as they are.
//!
//! A commit's frames become visible to other connections only after its sync (WAL with
//! `synchronous=FULL`, which the connections using this VFS must set): before that, no
//! other connection reads them, so nothing it reads can still be in this buffer.
//!
//! All the `unsafe` of the service lives here, behind [`register`] and [`NAME`].

use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr;
use std::sync::OnceLock;

use memmap2::MmapMut;
use rusqlite::ffi;

/// The name to open connections with (`Connection::open_with_flags_and_vfs`).
pub const NAME: &str = "wal-coalesce";
const NAME_C: &CStr = c"wal-coalesce";

/// Largest run of writes kept before it is written out: the most the default unix VFS
/// writes in one call (it masks a write's length with `0x1ffff`). A commit of ~30 frames
/// goes out in one call, a larger one in pieces of this size.
const LIMIT: usize = 0x1ffff;

/// The default VFS this one wraps, set once by [`register`].
static BASE: OnceLock<usize> = OnceLock::new();

/// Registers the VFS under [`NAME`] (not as the default). Idempotent.
///
/// # Errors
/// When SQLite has no default VFS or refuses the registration.
pub fn register() -> Result<(), c_int> {
    static DONE: OnceLock<c_int> = OnceLock::new();
    let rc = *DONE.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find initializes SQLite if needed and returns the default
        // VFS or null. The new VFS is a copy of it, leaked (SQLite keeps the pointer for
        // the life of the process), with its own name, file size and xOpen.
        unsafe {
            let base = ffi::sqlite3_vfs_find(ptr::null());
            if base.is_null() {
                return ffi::SQLITE_ERROR;
            }
            let mut vfs: ffi::sqlite3_vfs = ptr::read(base);
            vfs.szOsFile = c_int::try_from(size_of::<WalFile>())
                .expect("WalFile is small")
                .saturating_add((*base).szOsFile);
            vfs.zName = NAME_C.as_ptr();
            vfs.pNext = ptr::null_mut();
            vfs.xOpen = Some(open);
            BASE.get_or_init(|| base as usize);
            ffi::sqlite3_vfs_register(Box::into_raw(Box::new(vfs)), 0)
        }
    });
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(rc)
    }
}

fn base() -> *mut ffi::sqlite3_vfs {
    *BASE.get().expect("registered before use") as *mut ffi::sqlite3_vfs
}

/// A WAL file: the default VFS's file (`real`, stored right after this header in the
/// allocation SQLite made of `szOsFile` bytes) and the writes not yet handed on.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    /// `len` bytes for the file from offset `start` on, in write order. An anonymous map
    /// of [`LIMIT`] bytes, made on first use: from the heap, a block this size made the
    /// allocator fault in a 2 MiB huge page (+2 MiB of idle RSS); mapped, only the
    /// pages written count.
    buf: Option<MmapMut>,
    len: usize,
    start: i64,
}

/// xOpen: WAL files get a [`WalFile`]; everything else is opened in place by the default
/// VFS (the allocation is larger than it needs), so those calls never pass through here.
unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let base = base();
    // SAFETY: `base` is the default VFS, alive for the process; `file` points to
    // `szOsFile` writable bytes, enough for a WalFile followed by the default's file.
    unsafe {
        let base_open = (*base).xOpen.expect("a VFS has xOpen");
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            return base_open(base, name, file, flags, out_flags);
        }
        let wal = file.cast::<WalFile>();
        let real = file
            .cast::<u8>()
            .add(size_of::<WalFile>())
            .cast::<ffi::sqlite3_file>();
        (*file).pMethods = ptr::null();
        let rc = base_open(base, name, real, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        ptr::write(
            wal,
            WalFile {
                base: ffi::sqlite3_file {
                    pMethods: &WAL_METHODS,
                },
                real,
                buf: None,
                len: 0,
                start: 0,
            },
        );
        ffi::SQLITE_OK
    }
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

/// The WalFile behind a file SQLite passes back, and the default VFS's methods.
///
/// # Safety
/// `file` must be a file opened by [`open`] with the WAL flag, not yet closed.
unsafe fn parts<'f>(
    file: *mut ffi::sqlite3_file,
) -> (&'f mut WalFile, &'static ffi::sqlite3_io_methods) {
    // SAFETY: per the contract, `file` is an initialized WalFile whose `real` was opened
    // successfully (so its methods are set and live for the process).
    unsafe {
        let wal = &mut *file.cast::<WalFile>();
        let methods = &*(*wal.real).pMethods;
        (wal, methods)
    }
}

impl WalFile {
    /// Hands the pending bytes to the default VFS in one write. On failure they are
    /// dropped and the error returned to whichever call needed them out: SQLite then
    /// fails that call (a sync: the commit), as it would have failed the write.
    fn flush(&mut self, methods: &ffi::sqlite3_io_methods) -> c_int {
        let Some(buf) = self.buf.as_ref().filter(|_| self.len > 0) else {
            return ffi::SQLITE_OK;
        };
        let len = c_int::try_from(self.len).expect("at most LIMIT");
        self.len = 0;
        // SAFETY: `real` is open; the buffer holds `len` bytes.
        unsafe {
            methods.xWrite.expect("a file has xWrite")(
                self.real,
                buf.as_ptr().cast(),
                len,
                self.start,
            )
        }
    }
}

/// Every method that can observe the file flushes first, then calls the default's.
macro_rules! flushed {
    ($file:expr, $method:ident ( $($arg:expr),* )) => {{
        // SAFETY: SQLite calls this only with a file `open` returned for a WAL.
        let (wal, methods) = unsafe { parts($file) };
        let rc = wal.flush(methods);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        // SAFETY: `real` is open and the arguments are SQLite's, passed on as they are.
        unsafe { methods.$method.expect(concat!("a file has ", stringify!($method)))(wal.real $(, $arg)*) }
    }};
}

/// Methods that neither see nor change the file's bytes go straight through.
macro_rules! through {
    ($file:expr, $method:ident ( $($arg:expr),* )) => {{
        // SAFETY: as in `flushed!`.
        let (wal, methods) = unsafe { parts($file) };
        // SAFETY: as in `flushed!`.
        unsafe { methods.$method.expect(concat!("a file has ", stringify!($method)))(wal.real $(, $arg)*) }
    }};
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite calls this only with a file `open` returned for a WAL.
    let (wal, methods) = unsafe { parts(file) };
    let amount_len = usize::try_from(amount).unwrap_or(0);
    // SAFETY: SQLite passes `amount` readable bytes at `data`.
    let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), amount_len) };
    let appends =
        wal.len > 0 && offset == wal.start + wal.len as i64 && wal.len + bytes.len() <= LIMIT;
    if !appends {
        let rc = wal.flush(methods);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        if wal.buf.is_none() && bytes.len() < LIMIT {
            // Without a buffer (the map failed), writes go straight through.
            wal.buf = MmapMut::map_anon(LIMIT).ok();
        }
        if wal.buf.is_none() || bytes.len() >= LIMIT {
            // SAFETY: as in `flushed!`.
            return unsafe {
                methods.xWrite.expect("a file has xWrite")(wal.real, data, amount, offset)
            };
        }
        wal.start = offset;
    }
    if let Some(buf) = wal.buf.as_mut() {
        buf[wal.len..wal.len + bytes.len()].copy_from_slice(bytes);
        wal.len += bytes.len();
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls this once, with a file `open` returned for a WAL; after it the
    // file is not used again, so the WalFile is dropped in place.
    unsafe {
        let (wal, methods) = parts(file);
        let flushed = wal.flush(methods);
        let closed = methods.xClose.expect("a file has xClose")(wal.real);
        ptr::drop_in_place(file.cast::<WalFile>());
        (*file).pMethods = ptr::null();
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            closed
        }
    }
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    data: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    flushed!(file, xRead(data, amount, offset))
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    flushed!(file, xTruncate(size))
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    flushed!(file, xSync(flags))
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    flushed!(file, xFileSize(size))
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    flushed!(file, xFileControl(op, arg))
}

unsafe extern "C" fn fetch(
    file: *mut ffi::sqlite3_file,
    offset: i64,
    amount: c_int,
    out: *mut *mut c_void,
) -> c_int {
    flushed!(file, xFetch(offset, amount, out))
}

unsafe extern "C" fn unfetch(file: *mut ffi::sqlite3_file, offset: i64, p: *mut c_void) -> c_int {
    through!(file, xUnfetch(offset, p))
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    through!(file, xLock(level))
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    through!(file, xUnlock(level))
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    through!(file, xCheckReservedLock(out))
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    through!(file, xSectorSize())
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    through!(file, xDeviceCharacteristics())
}

unsafe extern "C" fn shm_map(
    file: *mut ffi::sqlite3_file,
    page: c_int,
    page_size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    through!(file, xShmMap(page, page_size, extend, out))
}

unsafe extern "C" fn shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    through!(file, xShmLock(offset, n, flags))
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    through!(file, xShmBarrier())
}

unsafe extern "C" fn shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    through!(file, xShmUnmap(delete))
}
