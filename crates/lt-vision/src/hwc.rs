//! [`HwcMut`]: the image a geometric kernel transforms in place.

/// An interleaved HWC `u8` image of `w × h` pixels with `c` channels,
/// borrowed for an in-place transform, with the scratch buffer geometric
/// kernels resample into (the two are swapped afterwards).
pub struct HwcMut<'a> {
    pub px: &'a mut Vec<u8>,
    pub scratch: &'a mut Vec<u8>,
    pub w: usize,
    pub h: usize,
    pub c: usize,
}

impl<'a> HwcMut<'a> {
    pub fn new(px: &'a mut Vec<u8>, scratch: &'a mut Vec<u8>, w: usize, h: usize, c: usize) -> Self {
        HwcMut { px, scratch, w, h, c }
    }

    /// The same image, borrowed again (to hand it to a kernel and keep it).
    pub fn reborrow(&mut self) -> HwcMut<'_> {
        HwcMut { px: self.px, scratch: self.scratch, w: self.w, h: self.h, c: self.c }
    }
}
