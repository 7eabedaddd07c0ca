"""Views on the records: tables, summaries and comparisons. They only read records.

They may import record and project, and nothing that plans, builds or runs.
"""
