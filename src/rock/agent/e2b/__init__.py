"""The in-sandbox half of E2B's envd: processes (``process.py``), the filesystem
(``filesystem.py``) and the code interpreter's contexts (``interpreter.py``). The admin's half
is ``rock/admin/e2b/``."""
