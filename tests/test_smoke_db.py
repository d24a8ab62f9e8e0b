from tgms_tui.backend import queue


async def test_enqueue_claim_complete(pool):
    async with pool.connection() as conn:
        jid = await queue.enqueue(conn, "tgms_x", {"a": 1})
    async with pool.connection() as conn:
        jobs = await queue.claim_batch(conn, "tgms", "w1", 10, 30)
    assert [j.job_id for j in jobs] == [jid]
    async with pool.connection() as conn:
        assert await queue.complete_many(conn, [jid], "w1") == 1
