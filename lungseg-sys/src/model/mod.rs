//! Model file format and weights (skeleton; see issue 3)
