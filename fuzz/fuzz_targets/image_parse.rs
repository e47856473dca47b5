//! Fuzz target: reading a Cabin image, as the monitor does before loading
//! one. `Image::parse` (ELF validation, note walking, manifest decoding)
//! must only return errors on hostile input; an accepted image's
//! measurement must be computable without panicking.
//!
//! Run: `cargo +nightly fuzz run image_parse` (seed the corpus with images
//! from `cabinc build`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = cabin_image::image::Image::parse(data) {
        let _ = image.compute_measurement();
        let _ = image.execute_only();
    }
});
