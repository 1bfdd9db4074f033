"""What the book's chapters read from the committed tables (:mod:`fedshield.book.findings`).

The verdicts are :mod:`fedshield.claims`'; this subpackage only reads numbers, so that a chapter's
hidden cell can glue them into a sentence written by hand.
"""
