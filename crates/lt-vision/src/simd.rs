//! Runtime AVX2 dispatch for the pixel kernels.
//!
//! The workspace targets baseline x86-64, where the kernels' loops get
//! 4-wide SSE2 at best (and `f64::floor` is a libm call). [`avx2_dispatch`]
//! compiles a kernel a second time with AVX2 enabled and picks that copy at
//! run time when the CPU has it. Results are bit-identical either way: Rust
//! never reassociates or fuses float operations, so wider vectors only
//! change how many pixels go at once.

/// `avx2_dispatch!(fn name(a: A, b: B) -> R => body_fn);` defines `name`,
/// which runs `body_fn` (an `#[inline(always)]` function with the same
/// arguments) compiled for AVX2 when the CPU has it, for baseline x86-64
/// otherwise.
macro_rules! avx2_dispatch {
    ($vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:path) => {
        #[inline]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: AVX2 support was just detected.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

pub(crate) use avx2_dispatch;
