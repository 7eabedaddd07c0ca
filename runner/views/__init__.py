"""Views on the records: tables, summaries and comparisons. They only read records.

They may import record, project and plan (the files a function depends on), and nothing
that builds or runs.
"""
