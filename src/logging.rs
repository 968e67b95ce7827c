//! The core's one logging layer: `logging::info!(...)` and its siblings (`trace`, `debug`,
//! `error`: the levels the core uses) take `format!`-style
//! arguments and go to the `log` crate (the default, which the binary shows through
//! env_logger), or with the `defmt` feature to `defmt`, the embedded ecosystem's deferred
//! logger (smoltcp's own `defmt` feature goes with it). A defmt line is formatted here with
//! `core::fmt` into a 160-byte buffer and sent as one `{=str}` argument: the transport and the
//! host tools are defmt's, the formatting cost is not deferred.

/// Formats `args` and hands the text to `emit` (the defmt macro of the line's level).
#[cfg(feature = "defmt")]
pub(crate) fn defmt_line(args: core::fmt::Arguments<'_>, emit: impl FnOnce(&str)) {
    let mut line = heapless::String::<160>::new();
    // A longer line is cut: logging never fails the caller.
    let _ = core::fmt::write(&mut line, args);
    emit(line.as_str());
}

macro_rules! make {
    ($d:tt $name:ident) => {
        macro_rules! $name {
            ($d($d arg:tt)*) => {{
                #[cfg(feature = "defmt")]
                $crate::logging::defmt_line(format_args!($d($d arg)*), |s| defmt::$name!("{=str}", s));
                #[cfg(not(feature = "defmt"))]
                ::log::$name!($d($d arg)*);
            }};
        }
        pub(crate) use $name;
    };
}

make!($ trace);
make!($ debug);
make!($ info);

make!($ error);
