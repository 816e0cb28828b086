//! (skeleton; see issue 3)
