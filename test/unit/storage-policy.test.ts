import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isPublicPolicy } from '../../src/router/storage.js';

test('a bucket policy that lets anyone in is recognised (the router then refuses to start)', () => {
  const stmt = (Principal: unknown, Effect = 'Allow') => JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect, Principal, Action: ['s3:GetObject'], Resource: ['arn:aws:s3:::b/*'] }] });
  assert.equal(isPublicPolicy(stmt('*')), true);
  assert.equal(isPublicPolicy(stmt({ AWS: ['*'] })), true);
  assert.equal(isPublicPolicy(stmt({ AWS: '*' })), true);
  assert.equal(isPublicPolicy(stmt('*', 'Deny')), false);
  assert.equal(isPublicPolicy(stmt({ AWS: ['arn:aws:iam::1:user/relay'] })), false);
  assert.equal(isPublicPolicy(''), false);
  assert.equal(isPublicPolicy('{"Statement":{"Effect":"Allow","Principal":"*"}}'), true);
});
