//! Property: free text from config comes out of every renderer as data, never as syntax.
