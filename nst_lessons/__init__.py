"""nst_lessons: neural style transfer (Gatys, Ecker & Bethge, 2015) from first principles."""

__version__ = "0.1.0"
