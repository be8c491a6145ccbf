//! The Lua scripts of the Redis engine.
//!
//! Every mutation is one script, so it runs atomically on the server: the
//! entry change, its change-log record, blob reference counts and deletion
//! queue records commit together, and a conditional put is a compare-and-swap.
//! Redis does not roll a script back when it fails half-way, so each script
//! checks and decodes everything first and writes only after that.
//!
//! Scripts return a table whose first element is a status: `ok`, or one of
//! `nobucket`, `exists`, `notempty`, `nokey`, `precondition`, `noupload`,
//! `changed`, `busy`
//! (see [`super::status_error`]). Times come from the caller (`now` is the
//! gateway's `now_millis()`), so queue times compare with the collector's.
//! Every key a script touches is passed in `KEYS`.
//!
//! Each script names its `KEYS` and `ARGV` at its top, one a line and in
//! order, and uses only those names below (QUEUE_UNCOMMITTED reads its
//! variable number of blobs by index). A key is named as the `Keys`
//! method that builds it (`layout_blobs` is `Keys::layout_blobs`), so the
//! header reads like the `.key(...)` / `.arg(...)` chain of its caller in
//! [`super`]. Orders several scripts share are named once in the prelude,
//! by functions of the same names as the Rust helpers that pass them:
//! `commit_keys`, `commit_args`, `bucket_removal_keys` and `replica_tail`.
//!
//! The `APPLY_*` scripts replay a source region's change in a mirror: each
//! checks and moves the applied position and queues replication jobs in the
//! same script as the change itself (see [`super::RedisMeta::apply`]).

use redis::Script;

/// Helpers shared by the scripts; prepended to each.
const PRELUDE: &str = r#"
-- Calls fn on each blob of a list written as `<len>:<bytes>` repeated.
local function each_blob(list, fn)
  local pos, n = 1, #list
  while pos <= n do
    local colon = string.find(list, ':', pos, true)
    local len = tonumber(string.sub(list, pos, colon - 1))
    fn(string.sub(list, colon + 1, colon + len))
    pos = colon + len + 1
  end
end

-- A blob gains a reference; if it was queued for deletion it leaves the queue.
local function add_ref(refs, queue, blob)
  redis.call('HINCRBY', refs, blob, 1)
  redis.call('ZREM', queue, blob)
end

-- A blob loses a reference; at zero it is queued (an older record is kept).
local function drop_ref(refs, queue, blob, now)
  local left = redis.call('HINCRBY', refs, blob, -1)
  if left <= 0 then
    redis.call('HDEL', refs, blob)
    redis.call('ZADD', queue, 'NX', now, blob)
  end
end

local function drop_all(refs, queue, list, now)
  if list then
    each_blob(list, function(blob) drop_ref(refs, queue, blob, now) end)
  end
end

-- Appends a change-log record; `op` is the JSON of the operation.
local function append_change(seq_key, log_key, now, op)
  local seq = redis.call('INCR', seq_key)
  redis.call('ZADD', log_key, seq, '{"seq":' .. seq .. ',"at":' .. now .. ',"op":' .. op .. '}')
  return seq
end

-- Removes a layout by entry id, dropping its blobs' references.
local function remove_layout(layouts, lblobs, refs, queue, id, now)
  local blobs = redis.call('HGET', lblobs, id)
  redis.call('HDEL', layouts, id)
  redis.call('HDEL', lblobs, id)
  drop_all(refs, queue, blobs, now)
end

-- Removes an upload and its parts, dropping each part's references.
local function remove_upload(uploads, records, parts, part_records, part_blobs, refs, queue, stale,
                             member, upload_id, stale_member, now)
  local low, high = '[' .. upload_id .. '\0', '(' .. upload_id .. '\1'
  for _, part in ipairs(redis.call('ZRANGEBYLEX', parts, low, high)) do
    drop_all(refs, queue, redis.call('HGET', part_blobs, part), now)
    redis.call('HDEL', part_records, part)
    redis.call('HDEL', part_blobs, part)
  end
  redis.call('ZREMRANGEBYLEX', parts, low, high)
  redis.call('HDEL', records, member)
  redis.call('ZREM', uploads, member)
  redis.call('ZREM', stale, stale_member)
end

-- Put: checks the bucket and the condition. Returns an error status, or
-- nil with the current entry (or false) and its id.
local function check_commit(buckets, entries, bucket, key, cond, etag)
  if redis.call('HEXISTS', buckets, bucket) == 0 then return 'nobucket' end
  local cur = redis.call('HGET', entries, key)
  local cur_id = false
  if cur then cur_id = cjson.decode(cur).id end
  -- As `Precondition::check`.
  if cond == 'absent' then
    if cur then return 'precondition' end
  elseif cond == 'exists' then
    if not cur then return 'nokey' end
  elseif cond == 'match' then
    if not cur then return 'nokey' end
    if cjson.decode(cur).etag ~= etag then return 'precondition' end
  elseif cond == 'nonematch' then
    if cur and cjson.decode(cur).etag == etag then return 'precondition' end
  end
  return nil, cur, cur_id
end

-- KEYS[1..9] of the scripts that write or remove an entry (PUT,
-- COMPLETE_UPLOAD, DELETE, APPLY_PUT, APPLY_DELETE), by name: the order of
-- `RedisMeta::commit_keys`.
local function commit_keys()
  return {
    buckets = KEYS[1],
    keys = KEYS[2],
    entries = KEYS[3],
    layouts = KEYS[4],
    layout_blobs = KEYS[5],
    refs = KEYS[6],
    queue = KEYS[7],
    seq = KEYS[8],
    log = KEYS[9],
  }
end

-- ARGV[1..11] of the scripts that write an entry (PUT, COMPLETE_UPLOAD,
-- APPLY_PUT), by name: the order of `RedisMeta::commit_args`.
local function commit_args()
  return {
    bucket = ARGV[1],
    key = ARGV[2],
    cond = ARGV[3],         -- the precondition's kind (see check_commit)
    etag = ARGV[4],         -- the precondition's ETag, or empty
    entry_json = ARGV[5],
    id = ARGV[6],           -- the entry's id
    layout_json = ARGV[7],
    blobs = ARGV[8],        -- the layout's blobs, a blob list
    now = ARGV[9],
    bucket_json = ARGV[10], -- bucket and key as JSON strings, for the log
    key_json = ARGV[11],
  }
end

-- Put: writes the entry and its layout, replaces the old one, logs it.
-- `k` and `a` are `commit_keys()` and `commit_args()`.
-- The new references are added before the old ones are dropped, so a blob
-- both share never passes through the queue.
local function write_commit(k, a, cur_id)
  each_blob(a.blobs, function(blob) add_ref(k.refs, k.queue, blob) end)
  if cur_id then remove_layout(k.layouts, k.layout_blobs, k.refs, k.queue, cur_id, a.now) end
  redis.call('HSET', k.entries, a.key, a.entry_json)
  redis.call('ZADD', k.keys, 0, a.key)
  redis.call('HSET', k.layouts, a.id, a.layout_json)
  redis.call('HSET', k.layout_blobs, a.id, a.blobs)
  local op = '{"op":"put","bucket":' .. a.bucket_json .. ',"key":' .. a.key_json ..
             ',"entry":' .. a.entry_json .. ',"layout":' .. a.layout_json .. '}'
  return append_change(k.seq, k.log, a.now, op)
end

-- Removes an entry and its layout. Returns the entry, or false if absent.
local function remove_entry(keys, entries, layouts, lblobs, refs, queue, key, now)
  local cur = redis.call('HGET', entries, key)
  if not cur then return false end
  local id = cjson.decode(cur).id
  redis.call('HDEL', entries, key)
  redis.call('ZREM', keys, key)
  remove_layout(layouts, lblobs, refs, queue, id, now)
  return cur
end

-- The KEYS of the scripts that remove a bucket (DELETE_BUCKET,
-- APPLY_DELETE_BUCKET, RESET_BUCKET), by name: the order of
-- `RedisMeta::bucket_removal_keys`. Only the scripts that remove entries
-- too pass the last two (DELETE_BUCKET's bucket is empty already).
local function bucket_removal_keys()
  return {
    buckets = KEYS[1],
    keys = KEYS[2],
    entries = KEYS[3],
    uploads = KEYS[4],
    upload_records = KEYS[5],
    parts = KEYS[6],
    part_records = KEYS[7],
    part_blobs = KEYS[8],
    refs = KEYS[9],
    queue = KEYS[10],
    stale = KEYS[11],
    seq = KEYS[12],
    log = KEYS[13],
    layouts = KEYS[14],
    layout_blobs = KEYS[15],
  }
end

-- Removes a bucket's entries up to rank `stop` (-1: all) with their
-- layouts; `k` is `bucket_removal_keys()`. Every entry is decoded before
-- the first write, so a corrupt one fails the script before it changes
-- anything.
local function remove_entries(k, stop, now)
  local found = {}
  for _, key in ipairs(redis.call('ZRANGE', k.keys, 0, stop)) do
    local cur = redis.call('HGET', k.entries, key)
    local id = false
    if cur then id = cjson.decode(cur).id end
    found[#found + 1] = {key, id}
  end
  for _, item in ipairs(found) do
    redis.call('HDEL', k.entries, item[1])
    redis.call('ZREM', k.keys, item[1])
    if item[2] then remove_layout(k.layouts, k.layout_blobs, k.refs, k.queue, item[2], now) end
  end
end

-- Removes a bucket whose entries are gone; `k` is `bucket_removal_keys()`.
-- Uploads in progress are aborted: every part's blob loses its reference.
local function remove_bucket(k, bucket, now)
  for _, part in ipairs(redis.call('ZRANGE', k.parts, 0, -1)) do
    drop_all(k.refs, k.queue, redis.call('HGET', k.part_blobs, part), now)
  end
  for _, member in ipairs(redis.call('ZRANGE', k.uploads, 0, -1)) do
    redis.call('ZREM', k.stale, bucket .. '\0' .. member)
  end
  redis.call('DEL', k.keys, k.entries, k.uploads, k.upload_records, k.parts, k.part_records,
             k.part_blobs)
  redis.call('HDEL', k.buckets, bucket)
end

-- Queues a replication job for each blob of a list that has none yet (a
-- queued blob keeps its job). Ids come from a counter, so they only grow
-- and are never reused; they stay far below 2^53, exact as zset scores.
local function queue_jobs(jobs, next_job, list)
  each_blob(list, function(blob)
    if not redis.call('ZSCORE', jobs, blob) then
      redis.call('ZADD', jobs, redis.call('INCR', next_job), blob)
    end
  end)
end

-- The last three KEYS and last two ARGV of every APPLY_* script, by name:
-- the order of `RedisMeta::replica_tail`. Counted from the end, so each
-- script's own KEYS and ARGV come first, however many they are.
local function replica_tail()
  return {
    replica = KEYS[#KEYS - 2],  -- the applied position
    jobs = KEYS[#KEYS - 1],
    next_job = KEYS[#KEYS],
    seq = ARGV[#ARGV - 1],      -- the change's sequence number
    blobs = ARGV[#ARGV],        -- the blobs to replicate, a blob list
  }
end

-- Whether the change is past the applied position (none yet: it is);
-- `r` is `replica_tail()`.
local function replica_fresh(r)
  local at = redis.call('GET', r.replica)
  return (not at) or tonumber(r.seq) > tonumber(at)
end

-- Records the change as applied and queues its replication jobs.
local function replica_done(r)
  redis.call('SET', r.replica, r.seq)
  queue_jobs(r.jobs, r.next_job, r.blobs)
end

-- The index of the closing quote of the JSON string opening at `pos`.
local function json_string_end(json, pos)
  local at = pos + 1
  while true do
    local stop = string.find(json, '["\\]', at)
    if not stop then error('ferry: unterminated JSON string') end
    if string.sub(json, stop, stop) == '"' then return stop end
    at = stop + 2
  end
end

-- The index of the last byte of the JSON value starting at `pos`.
local function json_value_end(json, pos)
  local depth, at, n = 0, pos, #json
  while at <= n do
    local c = string.sub(json, at, at)
    if c == '"' then
      at = json_string_end(json, at)
      if depth == 0 then return at end
    elseif c == '{' or c == '[' then
      depth = depth + 1
    elseif c == '}' or c == ']' then
      if depth == 0 then return at - 1 end
      depth = depth - 1
      if depth == 0 then return at end
    elseif c == ',' and depth == 0 then
      return at - 1
    end
    at = at + 1
  end
  error('ferry: truncated JSON value')
end

-- `json`, a compact JSON object as serde_json writes it, with top-level
-- field `name` set to the JSON `value`, or removed when `value` is empty
-- (serde skips a default ACL). The field stays where it was; a new one goes
-- before field `before` when that is present, else last: its place in the
-- struct's declaration order, so the bytes are what serde_json would write.
-- cjson is no help here: re-encoding would reorder fields and rewrite
-- numbers and escapes.
local function with_field(json, name, value, before)
  if string.sub(json, 1, 1) ~= '{' then error('ferry: not a JSON object') end
  local wanted = '"' .. name .. '"'
  local following = before and ('"' .. before .. '"')
  local new = nil
  if value ~= '' then new = wanted .. ':' .. value end
  local fields, placed, at = {}, false, 2
  while string.sub(json, at, at) == '"' do
    local key_end = json_string_end(json, at)
    if string.sub(json, key_end + 1, key_end + 1) ~= ':' then
      error('ferry: malformed JSON object')
    end
    local key = string.sub(json, at, key_end)
    local stop = json_value_end(json, key_end + 2)
    if key == wanted or (key == following and not placed) then
      if new and not placed then fields[#fields + 1] = new end
      placed = true
    end
    if key ~= wanted then fields[#fields + 1] = string.sub(json, at, stop) end
    local sep = string.sub(json, stop + 1, stop + 1)
    at = stop + 2
    if sep == '}' then break end
    if sep ~= ',' then error('ferry: malformed JSON object') end
  end
  if new and not placed then fields[#fields + 1] = new end
  return '{' .. table.concat(fields, ',') .. '}'
end
"#;

/// Creates a bucket, logged. Refuses with `exists`.
const CREATE_BUCKET: &str = r#"
local buckets = KEYS[1]
local seq = KEYS[2]
local log = KEYS[3]
local bucket = ARGV[1]
local info_json = ARGV[2]
local now = ARGV[3]
local op_json = ARGV[4]
if redis.call('HEXISTS', buckets, bucket) == 1 then return {'exists'} end
redis.call('HSET', buckets, bucket, info_json)
return {'ok', append_change(seq, log, now, op_json)}
"#;

/// Removes an empty bucket, logged, aborting its uploads. Refuses with
/// `notempty`, and with `busy` (changing nothing) while its uploads hold
/// more than `limit` uploads or parts: the caller aborts some of them
/// first, one script each, so no one script drops an unbounded number.
const DELETE_BUCKET: &str = r#"
local k = bucket_removal_keys()  -- KEYS[1..13]
local bucket = ARGV[1]
local now = ARGV[2]
local op_json = ARGV[3]
local limit = tonumber(ARGV[4])
if redis.call('HEXISTS', k.buckets, bucket) == 0 then return {'nobucket'} end
if redis.call('ZCARD', k.keys) > 0 then return {'notempty'} end
if redis.call('ZCARD', k.uploads) > limit or redis.call('ZCARD', k.parts) > limit then
  return {'busy'}
end
remove_bucket(k, bucket, now)
return {'ok', append_change(k.seq, k.log, now, op_json)}
"#;

/// An entry and its layout, read together. Returns ok entry layout (or
/// false when the layout is missing).
const GET: &str = r#"
local buckets = KEYS[1]
local entries = KEYS[2]
local layouts = KEYS[3]
local bucket = ARGV[1]
local key = ARGV[2]
local entry = redis.call('HGET', entries, key)
if not entry then
  if redis.call('HEXISTS', buckets, bucket) == 0 then return {'nobucket'} end
  return {'nokey'}
end
local layout = redis.call('HGET', layouts, cjson.decode(entry).id)
return {'ok', entry, layout or false}
"#;

/// A conditional put. Returns ok seq, and the replaced entry (or false).
const PUT: &str = r#"
local k = commit_keys()  -- KEYS[1..9]
local a = commit_args()  -- ARGV[1..11]
local err, cur, cur_id = check_commit(k.buckets, k.entries, a.bucket, a.key, a.cond, a.etag)
if err then return {err} end
local seq = write_commit(k, a, cur_id)
return {'ok', seq, cur or false}
"#;

/// A put of an upload's object that ends the upload. The completion record
/// expires by itself (`PXAT`). Returns as PUT.
const COMPLETE_UPLOAD: &str = r#"
local k = commit_keys()  -- KEYS[1..9]
local uploads = KEYS[10]
local upload_records = KEYS[11]
local parts = KEYS[12]
local part_records = KEYS[13]
local part_blobs = KEYS[14]
local stale = KEYS[15]
local completion = KEYS[16]
local a = commit_args()  -- ARGV[1..11]
local upload_member = ARGV[12]
local upload_id = ARGV[13]
local stale_member = ARGV[14]
local completion_json = ARGV[15]
local keep_until = ARGV[16]    -- when the completion record expires (ms)
if redis.call('HEXISTS', upload_records, upload_member) == 0 then
  if redis.call('HEXISTS', k.buckets, a.bucket) == 0 then return {'nobucket'} end
  return {'noupload'}
end
local err, cur, cur_id = check_commit(k.buckets, k.entries, a.bucket, a.key, a.cond, a.etag)
if err then return {err} end
-- The entry's references are added before the parts' are dropped, so the
-- parts it uses never pass through the queue.
local seq = write_commit(k, a, cur_id)
remove_upload(uploads, upload_records, parts, part_records, part_blobs, k.refs, k.queue, stale,
              upload_member, upload_id, stale_member, a.now)
redis.call('SET', completion, completion_json, 'PXAT', keep_until)
return {'ok', seq, cur or false}
"#;

/// Replaces one hash field's value if it is still `old`, and logs the
/// change: a compare-and-swap for edits the caller computes (an ACL).
/// Returns ok seq, or `changed` when the field holds something else.
const SWAP_FIELD: &str = r#"
local hash = KEYS[1]
local seq = KEYS[2]
local log = KEYS[3]
local field = ARGV[1]
local old = ARGV[2]
local new = ARGV[3]
local now = ARGV[4]
local op_json = ARGV[5]
if redis.call('HGET', hash, field) ~= old then return {'changed'} end
redis.call('HSET', hash, field, new)
return {'ok', append_change(seq, log, now, op_json)}
"#;

/// Removes a key, logged when it was there. Returns ok, and the removed
/// entry (or false).
const DELETE: &str = r#"
local k = commit_keys()  -- KEYS[1..9]
local bucket = ARGV[1]
local key = ARGV[2]
local now = ARGV[3]
local op_json = ARGV[4]
if redis.call('HEXISTS', k.buckets, bucket) == 0 then return {'nobucket'} end
local cur = remove_entry(k.keys, k.entries, k.layouts, k.layout_blobs, k.refs, k.queue, key, now)
if not cur then return {'ok', false} end
append_change(k.seq, k.log, now, op_json)
return {'ok', cur}
"#;

/// One page of a listing, merged keys and common prefixes in byte order.
/// A common prefix's group is skipped with one seek to `group 0xFF`. As
/// `listing::list`: batches start at one key after a seek and double while
/// all their keys are used, and at most `budget` keys are read in all;
/// a spent budget ends the page, truncated, after its last item.
/// Returns: ok truncated last keys entries prefixes.
const LIST: &str = r#"
local buckets = KEYS[1]
local keys = KEYS[2]
local entries = KEYS[3]
local bucket = ARGV[1]
local prefix = ARGV[2]
local delim = ARGV[3]     -- empty for none
local from = ARGV[4]      -- the first key to look at (`list_start`)
local upper = ARGV[5]     -- ZRANGEBYLEX bound above the prefix's keys
local max = tonumber(ARGV[6])
local budget = tonumber(ARGV[7])  -- keys this call may read, at least 1
if redis.call('HEXISTS', buckets, bucket) == 0 then return {'nobucket'} end
local plen, dlen = #prefix, #delim
local page_keys, page_entries, groups = {}, {}, {}
local count, truncated, last, read = 0, 0, '', 0
-- Without a delimiter every key read is used; one read is capped so the
-- reply of one ZRANGEBYLEX stays small.
local batch_size = 1000
if dlen > 0 then batch_size = 1 end
local function group_of(key)
  if dlen == 0 then return nil end
  local at = string.find(key, delim, plen + 1, true)
  if not at then return nil end
  return string.sub(key, 1, at + dlen - 1)
end
while true do
  -- One more than fits, so a full page knows whether more follow.
  local want = math.min(max - count + 1, batch_size, budget - read)
  if want <= 0 then truncated = 1; break end
  local batch = redis.call('ZRANGEBYLEX', keys, '[' .. from, upper, 'LIMIT', 0, want)
  read = read + #batch
  local sought, stop = false, false
  for _, key in ipairs(batch) do
    if string.sub(key, 1, plen) ~= prefix then stop = true; break end
    if count == max then truncated = 1; stop = true; break end
    count = count + 1
    local group = group_of(key)
    if group then
      groups[#groups + 1] = group
      last = group
      from = group .. '\255'
      sought = true
      break
    end
    local entry = redis.call('HGET', entries, key)
    if not entry then return redis.error_reply('ferry: key ' .. key .. ' has no entry') end
    page_keys[#page_keys + 1] = key
    page_entries[#page_entries + 1] = entry
    last = key
    from = key .. '\0'
  end
  if stop then break end
  if sought then
    batch_size = 1
  elseif #batch < want then
    break
  else
    batch_size = math.min(want * 2, 1000)
  end
end
return {'ok', truncated, last, page_keys, page_entries, groups}
"#;

/// Values of a hash for the members of a zset in a lex range.
const RANGE: &str = r#"
local zset = KEYS[1]
local hash = KEYS[2]
local min = ARGV[1]
local max = ARGV[2]
local limit = ARGV[3]
local out = {}
for _, member in ipairs(redis.call('ZRANGEBYLEX', zset, min, max, 'LIMIT', 0, tonumber(limit))) do
  local value = redis.call('HGET', hash, member)
  if value then out[#out + 1] = value end
end
return out
"#;

/// Starts an upload.
const CREATE_UPLOAD: &str = r#"
local buckets = KEYS[1]
local uploads = KEYS[2]
local upload_records = KEYS[3]
local stale = KEYS[4]
local bucket = ARGV[1]
local upload_member = ARGV[2]
local upload_json = ARGV[3]
local initiated = ARGV[4]
local stale_member = ARGV[5]
if redis.call('HEXISTS', buckets, bucket) == 0 then return {'nobucket'} end
redis.call('ZADD', uploads, 0, upload_member)
redis.call('HSET', upload_records, upload_member, upload_json)
redis.call('ZADD', stale, initiated, stale_member)
return {'ok'}
"#;

/// Records a part, replacing one with its number. Returns ok, and the
/// replaced part (or false).
const PUT_PART: &str = r#"
local buckets = KEYS[1]
local upload_records = KEYS[2]
local parts = KEYS[3]
local part_records = KEYS[4]
local part_blobs = KEYS[5]
local refs = KEYS[6]
local queue = KEYS[7]
local bucket = ARGV[1]
local upload_member = ARGV[2]
local part_member = ARGV[3]
local part_json = ARGV[4]
local blobs = ARGV[5]     -- the part's blobs, a blob list
local now = ARGV[6]
if redis.call('HEXISTS', upload_records, upload_member) == 0 then
  if redis.call('HEXISTS', buckets, bucket) == 0 then return {'nobucket'} end
  return {'noupload'}
end
each_blob(blobs, function(blob) add_ref(refs, queue, blob) end)
local old = redis.call('HGET', part_records, part_member)
local old_blobs = redis.call('HGET', part_blobs, part_member)
redis.call('ZADD', parts, 0, part_member)
redis.call('HSET', part_records, part_member, part_json)
redis.call('HSET', part_blobs, part_member, blobs)
drop_all(refs, queue, old_blobs, now)
return {'ok', old or false}
"#;

/// Ends an upload without an object.
const ABORT_UPLOAD: &str = r#"
local buckets = KEYS[1]
local uploads = KEYS[2]
local upload_records = KEYS[3]
local parts = KEYS[4]
local part_records = KEYS[5]
local part_blobs = KEYS[6]
local refs = KEYS[7]
local queue = KEYS[8]
local stale = KEYS[9]
local bucket = ARGV[1]
local upload_member = ARGV[2]
local upload_id = ARGV[3]
local stale_member = ARGV[4]
local now = ARGV[5]
if redis.call('HEXISTS', upload_records, upload_member) == 0 then
  if redis.call('HEXISTS', buckets, bucket) == 0 then return {'nobucket'} end
  return {'noupload'}
end
remove_upload(uploads, upload_records, parts, part_records, part_blobs, refs, queue, stale,
              upload_member, upload_id, stale_member, now)
return {'ok'}
"#;

/// Queues the blobs without a reference (an older record is kept).
const QUEUE_UNCOMMITTED: &str = r#"
local refs = KEYS[1]
local queue = KEYS[2]
local now = ARGV[1]
-- ARGV[2], ARGV[3], ...: the blobs, as many as the caller passes.
for i = 2, #ARGV do
  local count = tonumber(redis.call('HGET', refs, ARGV[i]) or '0')
  if count <= 0 then redis.call('ZADD', queue, 'NX', now, ARGV[i]) end
end
return {'ok'}
"#;

/// Takes a queued blob out of the queue if its record is still the one the
/// caller read. Returns 1 when the caller may delete the blob.
const CLAIM_DELETION: &str = r#"
local refs = KEYS[1]
local queue = KEYS[2]
local blob = ARGV[1]
local queued_at = ARGV[2]   -- the queue record's score, as the caller read it
local score = redis.call('ZSCORE', queue, blob)
if (not score) or tonumber(score) ~= tonumber(queued_at) then return 0 end
redis.call('ZREM', queue, blob)
local count = tonumber(redis.call('HGET', refs, blob) or '0')
if count > 0 then return 0 end
return 1
"#;

/// Takes or renews a lease. The expiry is Redis's own (`PX`). Returns 1
/// when `holder` holds it.
const TRY_LEASE: &str = r#"
local lease = KEYS[1]
local holder = ARGV[1]
local ttl_ms = ARGV[2]
local current = redis.call('GET', lease)
if current and current ~= holder then return 0 end
redis.call('SET', lease, holder, 'PX', ttl_ms)
return 1
"#;

/// Removes change-log records through `through` and raises the floor to
/// it; a `through` at or below the floor changes nothing, so the floor
/// never goes down. Returns how many went.
const TRIM_LOG: &str = r#"
local log = KEYS[1]
local floor = KEYS[2]
local through = ARGV[1]
local current = tonumber(redis.call('GET', floor) or '0')
if tonumber(through) <= current then return 0 end
local removed = redis.call('ZREMRANGEBYSCORE', log, '-inf', through)
redis.call('SET', floor, through)
return removed
"#;

/// CREATE_BUCKET's KEYS and ARGV, then the replica tail. Returns ok 1 when
/// applied, ok 0 when at or below the position. An existing bucket is kept
/// as it is.
const APPLY_CREATE_BUCKET: &str = r#"
local buckets = KEYS[1]
local seq = KEYS[2]
local log = KEYS[3]
local bucket = ARGV[1]
local info_json = ARGV[2]
local now = ARGV[3]
local op_json = ARGV[4]
local r = replica_tail()  -- KEYS[4..6], ARGV[5..6]
if not replica_fresh(r) then return {'ok', 0} end
if redis.call('HEXISTS', buckets, bucket) == 0 then
  redis.call('HSET', buckets, bucket, info_json)
  append_change(seq, log, now, op_json)
end
replica_done(r)
return {'ok', 1}
"#;

/// The bucket removal keys (all 15) and DELETE_BUCKET's ARGV, then the
/// replica tail. Whatever the bucket still holds goes with it. Returns as
/// APPLY_CREATE_BUCKET.
const APPLY_DELETE_BUCKET: &str = r#"
local k = bucket_removal_keys()  -- KEYS[1..15]
local bucket = ARGV[1]
local now = ARGV[2]
local op_json = ARGV[3]
local r = replica_tail()  -- KEYS[16..18], ARGV[4..5]
if not replica_fresh(r) then return {'ok', 0} end
if redis.call('HEXISTS', k.buckets, bucket) == 1 then
  remove_entries(k, -1, now)
  remove_bucket(k, bucket, now)
  append_change(k.seq, k.log, now, op_json)
end
replica_done(r)
return {'ok', 1}
"#;

/// PUT's KEYS and ARGV (the condition is ignored: a replayed put is
/// unconditional), then the replica tail. Returns as APPLY_CREATE_BUCKET.
const APPLY_PUT: &str = r#"
local k = commit_keys()  -- KEYS[1..9]
local a = commit_args()  -- ARGV[1..11]
local r = replica_tail()  -- KEYS[10..12], ARGV[12..13]
if not replica_fresh(r) then return {'ok', 0} end
local err, _, cur_id = check_commit(k.buckets, k.entries, a.bucket, a.key, 'none', '')
-- With no condition the only refusal is an absent bucket: a no-op here.
if not err then write_commit(k, a, cur_id) end
replica_done(r)
return {'ok', 1}
"#;

/// DELETE's KEYS and ARGV, then the replica tail. Returns as
/// APPLY_CREATE_BUCKET.
const APPLY_DELETE: &str = r#"
local k = commit_keys()  -- KEYS[1..9]
local bucket = ARGV[1]
local key = ARGV[2]
local now = ARGV[3]
local op_json = ARGV[4]
local r = replica_tail()  -- KEYS[10..12], ARGV[5..6]
if not replica_fresh(r) then return {'ok', 0} end
if redis.call('HEXISTS', k.buckets, bucket) == 1 and
   remove_entry(k.keys, k.entries, k.layouts, k.layout_blobs, k.refs, k.queue, key, now) then
  append_change(k.seq, k.log, now, op_json)
end
replica_done(r)
return {'ok', 1}
"#;

/// Sets the `acl` of one record of a hash (a bucket's info or an entry) if
/// present, then the replica tail. Returns as APPLY_CREATE_BUCKET.
const APPLY_ACL: &str = r#"
local hash = KEYS[1]      -- buckets, or a bucket's entries
local seq = KEYS[2]
local log = KEYS[3]
local field = ARGV[1]     -- the bucket's name, or the object's key
local acl_json = ARGV[2]  -- empty for private, which serde skips
local before = ARGV[3]    -- the field after `acl` in the record's struct (empty: `acl` is last)
local now = ARGV[4]
local op_json = ARGV[5]
local r = replica_tail()  -- KEYS[4..6], ARGV[6..7]
if not replica_fresh(r) then return {'ok', 0} end
local cur = redis.call('HGET', hash, field)
if cur then
  if before == '' then before = nil end
  redis.call('HSET', hash, field, with_field(cur, 'acl', acl_json, before))
  append_change(seq, log, now, op_json)
end
replica_done(r)
return {'ok', 1}
"#;

/// One step of a replica reset: removes up to `limit` entries of a bucket,
/// then, once none are left, the bucket itself (logged as its deletion).
/// Returns ok 1 while entries are left, ok 0 when the bucket is gone.
const RESET_BUCKET: &str = r#"
local k = bucket_removal_keys()  -- KEYS[1..15]
local bucket = ARGV[1]
local now = ARGV[2]
local op_json = ARGV[3]
local limit = ARGV[4]
if redis.call('HEXISTS', k.buckets, bucket) == 0 then return {'ok', 0} end
remove_entries(k, tonumber(limit) - 1, now)
if redis.call('EXISTS', k.keys) == 1 then return {'ok', 1} end
remove_bucket(k, bucket, now)
append_change(k.seq, k.log, now, op_json)
return {'ok', 0}
"#;

/// The last step of a replica reset: queues up to `limit` blobs that still
/// have a reference count (no entry names them any more) and forgets the
/// counts; once none are left, drops whatever layouts and stale-upload
/// records no bucket claimed. A reloaded entry takes its blobs out of the
/// queue again (`add_ref`). Returns ok 1 while counts are left, ok 0 when
/// done.
const RESET_REFS: &str = r#"
local refs = KEYS[1]
local queue = KEYS[2]
local layouts = KEYS[3]
local layout_blobs = KEYS[4]
local stale = KEYS[5]
local now = ARGV[1]
local limit = ARGV[2]
for _, blob in ipairs(redis.call('HRANDFIELD', refs, tonumber(limit))) do
  redis.call('ZADD', queue, 'NX', now, blob)
  redis.call('HDEL', refs, blob)
end
if redis.call('EXISTS', refs) == 1 then return {'ok', 1} end
-- Normally empty already; UNLINK frees a large leftover off the main thread.
redis.call('UNLINK', layouts, layout_blobs, stale)
return {'ok', 0}
"#;

/// Queues replication jobs for blobs that have none.
const QUEUE_JOBS: &str = r#"
local jobs = KEYS[1]
local next_job = KEYS[2]
local blobs = ARGV[1]  -- a blob list
queue_jobs(jobs, next_job, blobs)
return {'ok'}
"#;

/// Drops a replication job if the blob's job is still this one (a blob
/// finished and queued again has a newer job that must stay).
const FINISH_JOB: &str = r#"
local jobs = KEYS[1]
local blob = ARGV[1]
local id = ARGV[2]
local score = redis.call('ZSCORE', jobs, blob)
if score and tonumber(score) == tonumber(id) then
  redis.call('ZREM', jobs, blob)
end
return {'ok'}
"#;

pub(super) struct Scripts {
    pub create_bucket: Script,
    pub delete_bucket: Script,
    pub get: Script,
    pub put: Script,
    pub complete_upload: Script,
    pub swap_field: Script,
    pub delete: Script,
    pub list: Script,
    pub range: Script,
    pub create_upload: Script,
    pub put_part: Script,
    pub abort_upload: Script,
    pub queue_uncommitted: Script,
    pub claim_deletion: Script,
    pub try_lease: Script,
    pub trim_log: Script,
    pub apply_create_bucket: Script,
    pub apply_delete_bucket: Script,
    pub apply_put: Script,
    pub apply_delete: Script,
    pub apply_acl: Script,
    pub reset_bucket: Script,
    pub reset_refs: Script,
    pub queue_jobs: Script,
    pub finish_job: Script,
}

fn with_prelude(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            create_bucket: with_prelude(CREATE_BUCKET),
            delete_bucket: with_prelude(DELETE_BUCKET),
            get: Script::new(GET),
            put: with_prelude(PUT),
            complete_upload: with_prelude(COMPLETE_UPLOAD),
            swap_field: with_prelude(SWAP_FIELD),
            delete: with_prelude(DELETE),
            list: Script::new(LIST),
            range: Script::new(RANGE),
            create_upload: Script::new(CREATE_UPLOAD),
            put_part: with_prelude(PUT_PART),
            abort_upload: with_prelude(ABORT_UPLOAD),
            queue_uncommitted: Script::new(QUEUE_UNCOMMITTED),
            claim_deletion: Script::new(CLAIM_DELETION),
            try_lease: Script::new(TRY_LEASE),
            trim_log: Script::new(TRIM_LOG),
            apply_create_bucket: with_prelude(APPLY_CREATE_BUCKET),
            apply_delete_bucket: with_prelude(APPLY_DELETE_BUCKET),
            apply_put: with_prelude(APPLY_PUT),
            apply_delete: with_prelude(APPLY_DELETE),
            apply_acl: with_prelude(APPLY_ACL),
            reset_bucket: with_prelude(RESET_BUCKET),
            reset_refs: Script::new(RESET_REFS),
            queue_jobs: with_prelude(QUEUE_JOBS),
            finish_job: Script::new(FINISH_JOB),
        }
    }
}
