"""empi: persons, records, blocks, reviews, history, queue

Revision ID: 0006_empi
Revises: 0005_mapping_review
Create Date: 2026-12-04 20:17:06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006_empi'
down_revision = '0005_mapping_review'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('hub_empi_block',
    sa.Column('block_key', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('record_pk', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.PrimaryKeyConstraint('block_key', 'record_pk', name=op.f('pk_hub_empi_block'))
    )
    with op.batch_alter_table('hub_empi_block', schema=None) as batch_op:
        batch_op.create_index('ix_hub_empi_block_record', ['record_pk'], unique=False)

    op.create_table('hub_empi_event',
    sa.Column('event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('person_id', sa.String(length=64), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=True),
    sa.Column('other_person', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_hub_empi_event'))
    )
    with op.batch_alter_table('hub_empi_event', schema=None) as batch_op:
        batch_op.create_index('ix_hub_empi_event_patient', ['patient_id', 'event_id'], unique=False)
        batch_op.create_index('ix_hub_empi_event_person', ['person_id', 'event_id'], unique=False)

    op.create_table('hub_empi_no_match',
    sa.Column('patient_a', sa.String(length=64), nullable=False),
    sa.Column('patient_b', sa.String(length=64), nullable=False),
    sa.Column('decided_by', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('patient_a', 'patient_b', name=op.f('pk_hub_empi_no_match'))
    )
    with op.batch_alter_table('hub_empi_no_match', schema=None) as batch_op:
        batch_op.create_index('ix_hub_empi_no_match_b', ['patient_b', 'patient_a'], unique=False)

    op.create_table('hub_empi_person',
    sa.Column('person_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('person_id', sa.String(length=64), nullable=False),
    sa.Column('regional_id', sa.String(length=32), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('merged_into', sa.String(length=64), nullable=True),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('person_pk', name=op.f('pk_hub_empi_person')),
    sa.UniqueConstraint('person_id', name='uq_hub_empi_person_person_id'),
    sa.UniqueConstraint('regional_id', name='uq_hub_empi_person_regional_id')
    )
    op.create_table('hub_empi_queue',
    sa.Column('queue_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.Column('enqueued', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('queue_pk', name=op.f('pk_hub_empi_queue'))
    )
    op.create_table('hub_empi_record',
    sa.Column('record_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.Column('person_id', sa.String(length=64), nullable=False),
    sa.Column('grade', sa.String(length=16), nullable=False),
    sa.Column('origin', sa.String(length=8), nullable=False),
    sa.Column('score', sa.Float(), nullable=True),
    sa.Column('institution', sa.String(length=64), nullable=False),
    sa.Column('features', sa.Text(), nullable=False),
    sa.Column('updated', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('record_pk', name=op.f('pk_hub_empi_record')),
    sa.UniqueConstraint('patient_id', name='uq_hub_empi_record_patient_id')
    )
    with op.batch_alter_table('hub_empi_record', schema=None) as batch_op:
        batch_op.create_index('ix_hub_empi_record_person', ['person_id', 'patient_id'], unique=False)

    op.create_table('hub_empi_review',
    sa.Column('review_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.Column('candidate_person', sa.String(length=64), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('comparison', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_by', sa.String(length=200), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('review_id', name=op.f('pk_hub_empi_review'))
    )
    with op.batch_alter_table('hub_empi_review', schema=None) as batch_op:
        batch_op.create_index('ix_hub_empi_review_patient', ['patient_id', 'candidate_person'], unique=False)
        batch_op.create_index('ix_hub_empi_review_status', ['status', 'score'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('hub_empi_review', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_empi_review_status')
        batch_op.drop_index('ix_hub_empi_review_patient')

    op.drop_table('hub_empi_review')
    with op.batch_alter_table('hub_empi_record', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_empi_record_person')

    op.drop_table('hub_empi_record')
    op.drop_table('hub_empi_queue')
    op.drop_table('hub_empi_person')
    with op.batch_alter_table('hub_empi_no_match', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_empi_no_match_b')

    op.drop_table('hub_empi_no_match')
    with op.batch_alter_table('hub_empi_event', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_empi_event_person')
        batch_op.drop_index('ix_hub_empi_event_patient')

    op.drop_table('hub_empi_event')
    with op.batch_alter_table('hub_empi_block', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_empi_block_record')

    op.drop_table('hub_empi_block')
