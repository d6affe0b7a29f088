"""`python -m app evaluate`: counting and detection accuracy against labelled photos
(darknet's own validation layout), the way darknet's `detector map` computes AP."""
